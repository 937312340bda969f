//! One adapted linear: `P` pairs `(A_k, B_k)` and a scaling.

use candle_core::{DType, Device, Tensor, D};

use super::error::AdapterError;

/// The adapter of one linear `[out, in]`: `A_k` `[r, in]` and `B_k` `[out/P, r]` for
/// `k < P`, and `scaling = alpha / r`. Its weight update is the row-block stack
/// `scaling · [B_0 A_0; …; B_{P-1} A_{P-1}]`.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    a: Vec<Tensor>,
    b: Vec<Tensor>,
    scaling: f64,
    dropout: f32,
}

impl LoraAdapter {
    /// Checks the shapes and builds the adapter; `target` only names it in errors.
    pub fn new(
        target: &str,
        a: Vec<Tensor>,
        b: Vec<Tensor>,
        scaling: f64,
    ) -> Result<Self, AdapterError> {
        let bad = |message: String| AdapterError::Shape {
            target: target.to_string(),
            message,
        };
        if a.is_empty() || a.len() != b.len() {
            return Err(bad(format!(
                "{} A matrices and {} B matrices (need the same non-zero count)",
                a.len(),
                b.len()
            )));
        }
        let (rank, in_dim) = a[0].dims2().map_err(|_| {
            bad(format!(
                "A.0 has shape {:?}, expected [rank, in]",
                a[0].dims()
            ))
        })?;
        let (part_out, _) = b[0].dims2().map_err(|_| {
            bad(format!(
                "B.0 has shape {:?}, expected [out/P, rank]",
                b[0].dims()
            ))
        })?;
        for (k, (ak, bk)) in a.iter().zip(&b).enumerate() {
            if ak.dims() != [rank, in_dim] {
                return Err(bad(format!(
                    "A.{k} has shape {:?}, expected [{rank}, {in_dim}] like A.0",
                    ak.dims()
                )));
            }
            if bk.dims() != [part_out, rank] {
                return Err(bad(format!(
                    "B.{k} has shape {:?}, expected [{part_out}, {rank}] (rank of A.{k} is {rank})",
                    bk.dims()
                )));
            }
        }
        if !scaling.is_finite() {
            return Err(bad(format!("scaling {scaling} is not finite")));
        }
        Ok(Self {
            a,
            b,
            scaling,
            dropout: 0.0,
        })
    }

    /// The same adapter with input dropout `p` during training ([`LoraAdapter::forward_t`]).
    pub fn with_dropout(mut self, p: f32) -> Self {
        self.dropout = p;
        self
    }

    /// Number of `(A, B)` pairs.
    pub fn partitions(&self) -> usize {
        self.a.len()
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.a[0].dims()[0]
    }

    /// Input width of the adapted linear.
    pub fn in_dim(&self) -> usize {
        self.a[0].dims()[1]
    }

    /// Output width of the adapted linear (`P · rows of B_k`).
    pub fn out_dim(&self) -> usize {
        self.partitions() * self.b[0].dims()[0]
    }

    /// `alpha / r`.
    pub fn scaling(&self) -> f64 {
        self.scaling
    }

    /// Input dropout probability (training only).
    pub fn dropout(&self) -> f32 {
        self.dropout
    }

    /// The `A_k` matrices, `[r, in]` each.
    pub fn a(&self) -> &[Tensor] {
        &self.a
    }

    /// The `B_k` matrices, `[out/P, r]` each.
    pub fn b(&self) -> &[Tensor] {
        &self.b
    }

    /// The adapter with its matrices converted to `dtype` on `device`.
    pub fn to_dtype_device(&self, dtype: DType, device: &Device) -> candle_core::Result<Self> {
        let conv = |v: &[Tensor]| -> candle_core::Result<Vec<Tensor>> {
            v.iter()
                .map(|t| t.to_device(device)?.to_dtype(dtype))
                .collect()
        };
        Ok(Self {
            a: conv(&self.a)?,
            b: conv(&self.b)?,
            scaling: self.scaling,
            dropout: self.dropout,
        })
    }

    /// The weight update `scaling · [B_0 A_0; …]`, `[out, in]`, computed in f32.
    pub fn delta(&self) -> candle_core::Result<Tensor> {
        let blocks = self
            .a
            .iter()
            .zip(&self.b)
            .map(|(a, b)| b.to_dtype(DType::F32)?.matmul(&a.to_dtype(DType::F32)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&blocks, 0)?.affine(self.scaling, 0.0)
    }

    /// `weight + delta`, in f32. `target` names the module in errors.
    pub fn merge_into(&self, target: &str, weight: &Tensor) -> Result<Tensor, AdapterError> {
        self.check_weight(target, weight)?;
        let f = || -> candle_core::Result<Tensor> {
            let w = weight.to_dtype(DType::F32)?;
            w.add(&self.delta()?.to_device(w.device())?)
        };
        f().map_err(AdapterError::candle(target))
    }

    /// `weight − delta`, in f32: undoes [`LoraAdapter::merge_into`].
    pub fn unmerge_from(&self, target: &str, weight: &Tensor) -> Result<Tensor, AdapterError> {
        self.check_weight(target, weight)?;
        let f = || -> candle_core::Result<Tensor> {
            let w = weight.to_dtype(DType::F32)?;
            w.sub(&self.delta()?.to_device(w.device())?)
        };
        f().map_err(AdapterError::candle(target))
    }

    /// Checks that `weight` is the `[out, in]` base this adapter fits.
    pub fn check_weight(&self, target: &str, weight: &Tensor) -> Result<(), AdapterError> {
        let want = [self.out_dim(), self.in_dim()];
        if weight.dims() != want {
            return Err(AdapterError::Shape {
                target: target.to_string(),
                message: format!(
                    "base weight `{target}.weight` has shape {:?}, the adapter needs {want:?} \
                     (rank {}, {} partition(s))",
                    weight.dims(),
                    self.rank(),
                    self.partitions()
                ),
            });
        }
        Ok(())
    }

    /// The adapter's contribution to the output, `scaling · concat_k((x A_kᵀ) B_kᵀ)`,
    /// for `x` `[…, in]`; computed in the dtype of `x`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_t(x, false)
    }

    /// [`LoraAdapter::forward`] with input dropout when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let Some((&in_dim, lead)) = dims.split_last() else {
            candle_core::bail!("LoRA input must have at least one dimension");
        };
        let rows: usize = lead.iter().product();
        let mut x2 = x.reshape((rows, in_dim))?;
        if train && self.dropout > 0.0 {
            x2 = candle_nn::ops::dropout(&x2, self.dropout)?;
        }
        let dtype = x.dtype();
        let parts = self
            .a
            .iter()
            .zip(&self.b)
            .map(|(a, b)| {
                let xa = x2.matmul(&a.to_dtype(dtype)?.t()?)?;
                xa.matmul(&b.to_dtype(dtype)?.t()?)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let y = Tensor::cat(&parts, D::Minus1)?.affine(self.scaling, 0.0)?;
        let mut out = lead.to_vec();
        out.push(self.out_dim());
        y.reshape(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: (usize, usize)) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    fn two_partitions() -> LoraAdapter {
        // in = 2, rank = 1, out = 2 × 2.
        let a = vec![t(&[1.0, 2.0], (1, 2)), t(&[0.5, -1.0], (1, 2))];
        let b = vec![t(&[1.0, 3.0], (2, 1)), t(&[2.0, 0.0], (2, 1))];
        LoraAdapter::new("x", a, b, 0.5).unwrap()
    }

    #[test]
    fn delta_stacks_row_blocks() {
        let d = two_partitions().delta().unwrap().to_vec2::<f32>().unwrap();
        // 0.5 · [B0 A0; B1 A1] = 0.5 · [[1,2],[3,6],[1,-2],[0,0]]
        assert_eq!(
            d,
            vec![
                vec![0.5, 1.0],
                vec![1.5, 3.0],
                vec![0.5, -1.0],
                vec![0.0, 0.0]
            ]
        );
    }

    #[test]
    fn forward_equals_x_times_delta_transposed_and_merge_round_trips() {
        let ad = two_partitions();
        let x = Tensor::from_slice(&[1.0f32, -2.0, 0.5, 3.0, 2.0, 1.0], (1, 3, 2), &Device::Cpu)
            .unwrap();
        let y = ad.forward(&x).unwrap();
        assert_eq!(y.dims(), &[1, 3, 4]);
        let want = x
            .broadcast_matmul(&ad.delta().unwrap().t().unwrap())
            .unwrap();
        let diff: f32 = (y - want)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-6);

        let w = Tensor::ones((4, 2), DType::F32, &Device::Cpu).unwrap();
        let merged = ad.merge_into("x", &w).unwrap();
        assert_ne!(
            merged.to_vec2::<f32>().unwrap(),
            w.to_vec2::<f32>().unwrap()
        );
        let back = ad.unmerge_from("x", &merged).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        let wrong = Tensor::ones((2, 4), DType::F32, &Device::Cpu).unwrap();
        let err = ad.merge_into("layer.q", &wrong).unwrap_err().to_string();
        assert!(err.contains("layer.q") && err.contains("[2, 4]"), "{err}");
    }

    #[test]
    fn mismatched_matrices_are_refused() {
        let a = vec![t(&[1.0, 2.0], (1, 2))];
        let b = vec![t(&[1.0, 3.0], (1, 2))];
        let err = LoraAdapter::new("m", a, b, 1.0).unwrap_err().to_string();
        assert!(err.contains("`m`") && err.contains("B.0"), "{err}");
        assert!(LoraAdapter::new("m", vec![], vec![], 1.0).is_err());
    }
}
