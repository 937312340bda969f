//! The adapters of a whole model, keyed by canonical module name.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor, Var};

use super::adapter::LoraAdapter;
use super::config::LoraConfig;
use super::error::AdapterError;
use super::rng::SplitMix64;

/// How the `A_k` / `B_k` tensors of module `<target>` are named in a file:
/// `<target>.<a>.<k>` and `<target>.<b>.<k>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorNaming {
    a: &'static str,
    b: &'static str,
}

impl TensorNaming {
    /// `<target>.lora_A.<k>` / `<target>.lora_B.<k>` (this library's adapter files).
    pub const LORA: Self = Self::new("lora_A", "lora_B");

    /// A naming with the given `A` and `B` components.
    pub const fn new(a: &'static str, b: &'static str) -> Self {
        Self { a, b }
    }

    /// The `(A, B)` name components.
    pub fn tags(self) -> (&'static str, &'static str) {
        (self.a, self.b)
    }

    /// The name of `A_k` (`is_a`) or `B_k` of `target`.
    pub fn name(self, target: &str, is_a: bool, k: usize) -> String {
        let (a, b) = self.tags();
        format!("{target}.{}.{k}", if is_a { a } else { b })
    }

    /// Splits a tensor name into `(target, is_a, k)` when it is an adapter tensor.
    pub fn parse(self, name: &str) -> Option<(&str, bool, &str)> {
        let (a, b) = self.tags();
        let (head, k) = name.rsplit_once('.')?;
        let (target, tag) = head.rsplit_once('.')?;
        if tag == a {
            Some((target, true, k))
        } else if tag == b {
            Some((target, false, k))
        } else {
            None
        }
    }
}

/// Every adapter of a model and the configuration they follow.
#[derive(Debug, Clone)]
pub struct LoraAdapters {
    config: LoraConfig,
    adapters: BTreeMap<String, LoraAdapter>,
}

impl LoraAdapters {
    /// An empty set following `config`.
    pub fn new(config: LoraConfig) -> Result<Self, AdapterError> {
        config.validate()?;
        Ok(Self {
            config,
            adapters: BTreeMap::new(),
        })
    }

    /// Fresh adapters for every linear of `base` (canonical name → tensor; the weights are
    /// `<target>.weight`) that `config` targets, initialised as the release does: `A_k`
    /// kaiming-uniform with a = √5 (uniform in ±1/√in), `B_k` zeros, so the model is
    /// unchanged until trained. Targets are visited in name order from one generator
    /// seeded with `seed`. Tensors are f32 on `device`.
    pub fn init(
        config: LoraConfig,
        base: &HashMap<String, Tensor>,
        seed: u64,
        device: &Device,
    ) -> Result<Self, AdapterError> {
        let mut set = Self::new(config)?;
        let mut targets: Vec<(&str, &Tensor)> = base
            .iter()
            .filter_map(|(n, t)| Some((n.strip_suffix(".weight")?, t)))
            .filter(|(target, _)| set.config.rule_for(target).is_some())
            .collect();
        targets.sort_by(|a, b| a.0.cmp(b.0));
        let mut rng = SplitMix64::new(seed);
        let (rank, scaling) = (set.config.rank, set.config.scaling());
        for (target, w) in targets {
            let parts = set.partitions_of(target)?;
            let (out, inp) = w.dims2().map_err(|_| AdapterError::Shape {
                target: target.to_string(),
                message: format!("base weight has shape {:?}, expected [out, in]", w.dims()),
            })?;
            if out % parts != 0 {
                return Err(AdapterError::Shape {
                    target: target.to_string(),
                    message: format!("{out} output rows do not split into {parts} partitions"),
                });
            }
            let bound = 1.0 / (inp as f32).sqrt();
            let mut a = Vec::with_capacity(parts);
            let mut b = Vec::with_capacity(parts);
            for _ in 0..parts {
                let vals = rng.uniform(rank * inp, bound);
                let err = AdapterError::candle(target);
                a.push(Tensor::from_vec(vals, (rank, inp), device).map_err(err)?);
                let zeros = Tensor::zeros((out / parts, rank), DType::F32, device);
                b.push(zeros.map_err(AdapterError::candle(target))?);
            }
            let adapter = LoraAdapter::new(target, a, b, scaling)?.with_dropout(set.config.dropout);
            set.adapters.insert(target.to_string(), adapter);
        }
        Ok(set)
    }

    /// Collects the adapters named per `naming` from `tensors` (other names are ignored).
    /// Every adapter found must be targeted by `config`, have the rule's partition count
    /// and the config's rank; `context` (e.g. " in /path/file") is added to errors.
    pub fn from_tensors(
        config: LoraConfig,
        tensors: &HashMap<String, Tensor>,
        naming: TensorNaming,
        context: &str,
    ) -> Result<Self, AdapterError> {
        let mut set = Self::new(config)?;
        let mut found: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for name in tensors.keys() {
            if let Some((target, _, _)) = naming.parse(name) {
                found.entry(target).or_default().push(name);
            }
        }
        let scaling = set.config.scaling();
        for (target, names) in found {
            let parts = set
                .partitions_of(target)
                .map_err(|_| AdapterError::Unexpected {
                    name: names[0].to_string(),
                    message: format!(
                        "module `{target}` is not a target of the configuration{context}"
                    ),
                })?;
            let fetch = |is_a: bool, k: usize| -> Result<Tensor, AdapterError> {
                let n = naming.name(target, is_a, k);
                tensors
                    .get(&n)
                    .cloned()
                    .ok_or_else(|| AdapterError::Missing {
                        name: n,
                        context: context.to_string(),
                    })
            };
            let a = (0..parts)
                .map(|k| fetch(true, k))
                .collect::<Result<Vec<_>, _>>()?;
            let b = (0..parts)
                .map(|k| fetch(false, k))
                .collect::<Result<Vec<_>, _>>()?;
            if names.len() != 2 * parts {
                let extra = names
                    .iter()
                    .find(|n| {
                        !(0..parts).any(|k| {
                            **n == naming.name(target, true, k)
                                || **n == naming.name(target, false, k)
                        })
                    })
                    .unwrap_or(&names[0]);
                return Err(AdapterError::Unexpected {
                    name: extra.to_string(),
                    message: format!("module `{target}` has {parts} partitions{context}"),
                });
            }
            let adapter = LoraAdapter::new(target, a, b, scaling)?.with_dropout(set.config.dropout);
            if adapter.rank() != set.config.rank {
                return Err(AdapterError::Shape {
                    target: naming.name(target, true, 0),
                    message: format!(
                        "rank {} but the configuration says {}{context}",
                        adapter.rank(),
                        set.config.rank
                    ),
                });
            }
            set.adapters.insert(target.to_string(), adapter);
        }
        Ok(set)
    }

    /// The `A_k` / `B_k` tensors named per `naming`, sorted by name.
    pub fn to_tensors(&self, naming: TensorNaming) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (target, ad) in &self.adapters {
            for (k, (a, b)) in ad.a().iter().zip(ad.b()).enumerate() {
                out.push((naming.name(target, true, k), a.clone()));
                out.push((naming.name(target, false, k), b.clone()));
            }
        }
        out.sort_by(|x, y| x.0.cmp(&y.0));
        out
    }

    /// A copy of the set whose matrices are fresh [`Var`]s, for training: the returned vars
    /// (named per [`TensorNaming::LORA`], in name order) are what an optimizer updates, and
    /// the returned set computes with them, so gradients of its forward reach them. The
    /// base weights stay frozen: only `A_k` / `B_k` are trainable, as in the release.
    pub fn to_vars(&self) -> Result<(Self, Vec<(String, Var)>), AdapterError> {
        let mut set = Self::new(self.config.clone())?;
        let mut vars = Vec::new();
        for (target, ad) in &self.adapters {
            let mut make = |is_a: bool, k: usize, t: &Tensor| -> Result<Tensor, AdapterError> {
                let v = Var::from_tensor(t).map_err(AdapterError::candle(target))?;
                let tensor = v.as_tensor().clone();
                vars.push((TensorNaming::LORA.name(target, is_a, k), v));
                Ok(tensor)
            };
            let a = ad
                .a()
                .iter()
                .enumerate()
                .map(|(k, t)| make(true, k, t))
                .collect::<Result<Vec<_>, _>>()?;
            let b = ad
                .b()
                .iter()
                .enumerate()
                .map(|(k, t)| make(false, k, t))
                .collect::<Result<Vec<_>, _>>()?;
            let adapter = LoraAdapter::new(target, a, b, ad.scaling())?.with_dropout(ad.dropout());
            set.adapters.insert(target.clone(), adapter);
        }
        vars.sort_by(|x, y| x.0.cmp(&y.0));
        Ok((set, vars))
    }

    /// Adds (or replaces) the adapter of `target`, which the configuration must target with
    /// the same partition count and rank.
    pub fn insert(&mut self, target: &str, adapter: LoraAdapter) -> Result<(), AdapterError> {
        let parts = self.partitions_of(target)?;
        if adapter.partitions() != parts || adapter.rank() != self.config.rank {
            return Err(AdapterError::Shape {
                target: target.to_string(),
                message: format!(
                    "adapter has {} partitions of rank {}, the configuration needs {parts} of rank {}",
                    adapter.partitions(),
                    adapter.rank(),
                    self.config.rank
                ),
            });
        }
        self.adapters.insert(target.to_string(), adapter);
        Ok(())
    }

    fn partitions_of(&self, target: &str) -> Result<usize, AdapterError> {
        self.config
            .rule_for(target)
            .map(|r| r.partitions)
            .ok_or_else(|| AdapterError::Unexpected {
                name: target.to_string(),
                message: "not a target of the LoRA configuration".into(),
            })
    }

    /// The configuration.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The adapter of `target`, if any.
    pub fn get(&self, target: &str) -> Option<&LoraAdapter> {
        self.adapters.get(target)
    }

    /// `(target, adapter)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &LoraAdapter)> {
        self.adapters.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of adapted linears.
    pub fn len(&self) -> usize {
        self.adapters.len()
    }

    /// Whether there are no adapters.
    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty()
    }

    /// Checks that every adapter fits its base weight `<target>.weight` in `base`.
    pub fn check_base(
        &self,
        base: &HashMap<String, Tensor>,
        context: &str,
    ) -> Result<(), AdapterError> {
        for (target, ad) in &self.adapters {
            let name = format!("{target}.weight");
            let w = base.get(&name).ok_or_else(|| AdapterError::Missing {
                name: name.clone(),
                context: format!(" in the base model{context} (needed by the LoRA adapter)"),
            })?;
            ad.check_weight(target, w).map_err(|e| match e {
                AdapterError::Shape { target, message } => AdapterError::Shape {
                    target,
                    message: format!("{message}{context}"),
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// Replaces every adapted `<target>.weight` in `tensors` by `W + ΔW` (f32).
    pub fn merge_into(&self, tensors: &mut HashMap<String, Tensor>) -> Result<(), AdapterError> {
        self.apply(tensors, true)
    }

    /// Replaces every adapted `<target>.weight` in `tensors` by `W − ΔW` (f32): undoes
    /// [`LoraAdapters::merge_into`].
    pub fn unmerge_from(&self, tensors: &mut HashMap<String, Tensor>) -> Result<(), AdapterError> {
        self.apply(tensors, false)
    }

    fn apply(&self, tensors: &mut HashMap<String, Tensor>, add: bool) -> Result<(), AdapterError> {
        self.check_base(tensors, "")?;
        let mut updated = Vec::with_capacity(self.adapters.len());
        for (target, ad) in &self.adapters {
            let name = format!("{target}.weight");
            let Some(w) = tensors.get(&name) else {
                continue; // checked above
            };
            let new = if add {
                ad.merge_into(target, w)?
            } else {
                ad.unmerge_from(target, w)?
            };
            updated.push((name, new));
        }
        tensors.extend(updated);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::TargetRule;

    /// A fused QKV (3 partitions) and an output projection in the listed layers.
    fn two_targets(rank: usize, alpha: f64, layers: Option<Vec<usize>>) -> LoraConfig {
        LoraConfig {
            rank,
            alpha,
            dropout: 0.0,
            targets: vec![
                TargetRule::new("blocks.", "attn.qkv", 3, layers.clone()),
                TargetRule::new("blocks.", "attn.out", 1, layers),
            ],
        }
    }

    fn base() -> HashMap<String, Tensor> {
        let d = Device::Cpu;
        let mut m = HashMap::new();
        for i in 0..3 {
            let p = format!("blocks.{i}.attn");
            m.insert(
                format!("{p}.qkv.weight"),
                Tensor::ones((12, 8), DType::F32, &d).unwrap(),
            );
            m.insert(
                format!("{p}.out.weight"),
                Tensor::ones((8, 8), DType::F32, &d).unwrap(),
            );
        }
        m
    }

    #[test]
    fn init_follows_targets_and_release_init() {
        let set = LoraAdapters::init(
            two_targets(2, 1.0, Some(vec![0, 2])),
            &base(),
            5,
            &Device::Cpu,
        )
        .unwrap();
        let names: Vec<&str> = set.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "blocks.0.attn.out",
                "blocks.0.attn.qkv",
                "blocks.2.attn.out",
                "blocks.2.attn.qkv"
            ]
        );
        let qkv = set.get("blocks.0.attn.qkv").unwrap();
        assert_eq!(
            (qkv.partitions(), qkv.rank(), qkv.out_dim(), qkv.in_dim()),
            (3, 2, 12, 8)
        );
        let a: Vec<f32> = qkv.a()[1].flatten_all().unwrap().to_vec1().unwrap();
        let bound = 1.0 / 8f32.sqrt();
        assert!(a.iter().all(|v| v.abs() <= bound) && a.iter().any(|v| *v != 0.0));
        let b: f32 = qkv.b()[2]
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(b, 0.0);
        // Seeded: the same seed gives the same A, another seed another.
        let again = LoraAdapters::init(
            two_targets(2, 1.0, Some(vec![0, 2])),
            &base(),
            5,
            &Device::Cpu,
        )
        .unwrap();
        let other = LoraAdapters::init(
            two_targets(2, 1.0, Some(vec![0, 2])),
            &base(),
            6,
            &Device::Cpu,
        )
        .unwrap();
        let a_of = |s: &LoraAdapters| -> Vec<f32> {
            s.get("blocks.2.attn.out").unwrap().a()[0]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(a_of(&set), a_of(&again));
        assert_ne!(a_of(&set), a_of(&other));
    }

    #[test]
    fn trainable_copy_gets_gradients_like_the_release_init() {
        let cfg = two_targets(2, 1.0, Some(vec![0]));
        let set = LoraAdapters::init(cfg, &base(), 3, &Device::Cpu).unwrap();
        let (train, vars) = set.to_vars().unwrap();
        assert_eq!(vars.len(), 2 * (3 + 1));
        let target = "blocks.0.attn.qkv";
        let x = Tensor::ones((1, 5, 8), DType::F32, &Device::Cpu).unwrap();
        let loss = train
            .get(target)
            .unwrap()
            .forward(&x)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let norm = |name: &str| -> f32 {
            let v = &vars.iter().find(|(n, _)| n == name).unwrap().1;
            let g = grads.get(v.as_tensor()).unwrap();
            g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap()
        };
        // B = 0 at init: A gets no gradient yet, B does.
        assert_eq!(norm(&format!("{target}.lora_A.1")), 0.0);
        assert!(norm(&format!("{target}.lora_B.1")) > 0.0);
    }

    #[test]
    fn tensors_round_trip_and_strays_are_refused() {
        let set = LoraAdapters::init(two_targets(2, 1.0, Some(vec![1])), &base(), 1, &Device::Cpu)
            .unwrap();
        let named: HashMap<String, Tensor> =
            set.to_tensors(TensorNaming::LORA).into_iter().collect();
        assert_eq!(named.len(), 2 * (3 + 1));
        assert!(named.contains_key("blocks.1.attn.qkv.lora_B.2"));
        let back = LoraAdapters::from_tensors(set.config().clone(), &named, TensorNaming::LORA, "")
            .unwrap();
        assert_eq!(back.len(), 2);

        let mut missing = named.clone();
        missing.remove("blocks.1.attn.qkv.lora_A.1");
        let err =
            LoraAdapters::from_tensors(set.config().clone(), &missing, TensorNaming::LORA, " in f")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("qkv.lora_A.1") && err.contains(" in f"),
            "{err}"
        );

        let other_layer = two_targets(2, 1.0, Some(vec![0]));
        let err =
            LoraAdapters::from_tensors(other_layer, &named, TensorNaming::LORA, "").unwrap_err();
        assert!(err.to_string().contains("blocks.1"), "{err}");
    }

    #[test]
    fn merge_then_unmerge_restores_and_wrong_base_is_named() {
        let mut set =
            LoraAdapters::init(two_targets(2, 1.0, Some(vec![0])), &base(), 1, &Device::Cpu)
                .unwrap();
        let target = "blocks.0.attn.out";
        let ad = set.get(target).unwrap().clone();
        let b = vec![Tensor::ones((8, 2), DType::F32, &Device::Cpu).unwrap()];
        set.insert(
            target,
            LoraAdapter::new(target, ad.a().to_vec(), b, 0.5).unwrap(),
        )
        .unwrap();
        let mut m = base();
        let orig = m[&format!("{target}.weight")].clone();
        set.merge_into(&mut m).unwrap();
        let merged = m[&format!("{target}.weight")].clone();
        let moved: f32 = (&merged - &orig)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(moved > 0.1);
        set.unmerge_from(&mut m).unwrap();
        let back = visualglm_testing::max_abs_diff(&m[&format!("{target}.weight")], &orig);
        assert!(back <= 1e-6);

        let mut small = base();
        small.insert(
            format!("{target}.weight"),
            Tensor::ones((8, 4), DType::F32, &Device::Cpu).unwrap(),
        );
        let err = set.merge_into(&mut small).unwrap_err().to_string();
        assert!(err.contains(target) && err.contains("[8, 4]"), "{err}");
    }
}
