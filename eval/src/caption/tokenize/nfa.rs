//! A small regular-expression engine with the matching rules of a JFlex scanner.
//!
//! Patterns are built from [`Re`] combinators over UTF-16 code units (JFlex 1.4 scanners,
//! like the CoreNLP lexer, read Java `char`s) and compiled into one Thompson NFA whose
//! accepting states carry a rule number. [`Dfa::longest`] runs it as a lazily built DFA (the
//! subset construction, cached per state and ASCII unit): at a start position it reports
//! the longest match over all rules and, among the rules matching that length, the first
//! one — JFlex's disambiguation. [`Nfa::ends`] and [`Nfa::matches_exactly`] serve the split of a
//! trailing-context rule `r1/r2`.

use std::collections::HashMap;

/// A set of UTF-16 code units (a JFlex character class).
#[derive(Debug, Clone)]
pub(super) struct Class {
    /// Membership of the ASCII units, bit `u` for unit `u`.
    ascii: u128,
    /// Inclusive ranges of non-ASCII units.
    ranges: Vec<(u16, u16)>,
    /// Membership test for non-ASCII units not covered by `ranges`.
    pred: Option<fn(u16) -> bool>,
    /// True for a negated class (`[^...]`).
    negated: bool,
}

impl Class {
    /// The units listed in `spec`, where `x-y` between two characters is a range; a `-` at
    /// the start or the end is itself a member. Characters outside the BMP are ignored.
    pub(super) fn of(spec: &str) -> Class {
        let chars: Vec<char> = spec.chars().collect();
        let mut class = Class {
            ascii: 0,
            ranges: Vec::new(),
            pred: None,
            negated: false,
        };
        let mut i = 0;
        while i < chars.len() {
            let lo = chars[i];
            let is_range = i + 2 < chars.len() && chars[i + 1] == '-';
            let hi = if is_range { chars[i + 2] } else { lo };
            class.add_range(lo as u32, hi as u32);
            i += if is_range { 3 } else { 1 };
        }
        class
    }

    /// The units for which `pred` holds.
    pub(super) fn with(pred: fn(u16) -> bool) -> Class {
        let ascii = (0u16..128)
            .filter(|&u| pred(u))
            .fold(0u128, |acc, u| acc | 1 << u);
        Class {
            ascii,
            ranges: Vec::new(),
            pred: Some(pred),
            negated: false,
        }
    }

    /// The complement of `self` (over all UTF-16 units).
    pub(super) fn not(mut self) -> Class {
        self.negated = !self.negated;
        self
    }

    fn add_range(&mut self, lo: u32, hi: u32) {
        let hi = hi.min(0xFFFF);
        for u in lo..=hi.min(127) {
            self.ascii |= 1 << u;
        }
        if hi >= 128 && lo <= hi {
            self.ranges.push((lo.max(128) as u16, hi as u16));
        }
    }

    /// Whether unit `u` belongs to the class.
    #[inline]
    pub(super) fn contains(&self, u: u16) -> bool {
        let hit = if u < 128 {
            self.ascii >> u & 1 == 1
        } else {
            self.ranges.iter().any(|&(lo, hi)| lo <= u && u <= hi)
                || self.pred.is_some_and(|p| p(u))
        };
        hit != self.negated
    }
}

/// A regular expression over UTF-16 units.
#[derive(Debug, Clone)]
pub(super) enum Re {
    /// One unit of a class.
    Unit(Class),
    /// Concatenation.
    Seq(Vec<Re>),
    /// Alternation.
    Alt(Vec<Re>),
    /// `min` to `max` (unbounded when `None`) repetitions.
    Repeat(Box<Re>, u32, Option<u32>),
}

/// One NFA state.
#[derive(Debug, Clone)]
enum State {
    /// Consume one unit of `classes[class]`, then go to `next`.
    Unit { class: u32, next: u32 },
    /// Epsilon moves to every listed state.
    Fork(Vec<u32>),
    /// A match of rule `rule` ends here.
    Accept(u16),
}

/// A Thompson NFA for one or several rules.
#[derive(Debug, Clone)]
pub(super) struct Nfa {
    states: Vec<State>,
    classes: Vec<Class>,
    start: u32,
}

impl Nfa {
    /// An NFA accepting `rules[i]` with rule number `i`.
    pub(super) fn new(rules: &[Re]) -> Nfa {
        let mut nfa = Nfa {
            states: Vec::new(),
            classes: Vec::new(),
            start: 0,
        };
        let starts: Vec<u32> = rules
            .iter()
            .enumerate()
            .map(|(i, re)| {
                let accept = nfa.push(State::Accept(i as u16));
                nfa.compile(re, accept)
            })
            .collect();
        nfa.start = nfa.push(State::Fork(starts));
        nfa
    }

    fn push(&mut self, state: State) -> u32 {
        self.states.push(state);
        (self.states.len() - 1) as u32
    }

    /// Adds states matching `re` and then continuing at `next`; returns the entry state.
    fn compile(&mut self, re: &Re, next: u32) -> u32 {
        match re {
            Re::Unit(class) => {
                self.classes.push(class.clone());
                let class = (self.classes.len() - 1) as u32;
                self.push(State::Unit { class, next })
            }
            Re::Seq(items) => items
                .iter()
                .rev()
                .fold(next, |next, item| self.compile(item, next)),
            Re::Alt(items) => {
                let entries = items.iter().map(|item| self.compile(item, next)).collect();
                self.push(State::Fork(entries))
            }
            Re::Repeat(item, min, max) => {
                let mut tail = match max {
                    None => {
                        // A loop: the fork either enters the item (which returns to it) or leaves.
                        let fork = self.push(State::Fork(Vec::new()));
                        let body = self.compile(item, fork);
                        self.states[fork as usize] = State::Fork(vec![body, next]);
                        fork
                    }
                    Some(max) => (0..max.saturating_sub(*min)).fold(next, |tail, _| {
                        let body = self.compile(item, tail);
                        self.push(State::Fork(vec![body, next]))
                    }),
                };
                for _ in 0..*min {
                    tail = self.compile(item, tail);
                }
                tail
            }
        }
    }

    /// End positions (ascending) of the matches of this NFA starting at `start` that end at
    /// or before `limit`.
    pub(super) fn ends(&self, input: &[u16], start: usize, limit: usize) -> Vec<usize> {
        let mut m = Matcher::new(self);
        let mut ends = Vec::new();
        if m.begin().is_some() {
            ends.push(start);
        }
        for (pos, &u) in input.iter().enumerate().take(limit).skip(start) {
            if m.current.is_empty() {
                break;
            }
            if m.step(u).is_some() {
                ends.push(pos + 1);
            }
        }
        ends
    }

    /// Whether `input[start..end]` as a whole is a match.
    pub(super) fn matches_exactly(&self, input: &[u16], start: usize, end: usize) -> bool {
        let mut m = Matcher::new(self);
        let mut accepted = m.begin().is_some();
        for &u in &input[start..end] {
            if m.current.is_empty() {
                return false;
            }
            accepted = m.step(u).is_some();
        }
        accepted
    }
}

/// Lazily built DFA over an [`Nfa`]: each state is a set of NFA unit states plus the best
/// rule accepting on entering it; transitions on ASCII units are cached.
pub(super) struct Dfa<'a> {
    sim: Matcher<'a>,
    states: Vec<DfaState>,
    index: HashMap<(Vec<u32>, Option<u16>), u32>,
}

/// One DFA state.
struct DfaState {
    set: Vec<u32>,
    accept: Option<u16>,
    /// Next state per ASCII unit, [`UNKNOWN`] until computed.
    ascii: Box<[u32; 128]>,
}

/// The DFA state without NFA states (no match can continue).
const DEAD: u32 = 0;
/// The DFA state before the first unit.
const START: u32 = 1;
const UNKNOWN: u32 = u32::MAX;
/// The cache is dropped when it grows past this many states (a few MB).
const MAX_STATES: usize = 20_000;

impl<'a> Dfa<'a> {
    pub(super) fn new(nfa: &'a Nfa) -> Dfa<'a> {
        let mut dfa = Dfa {
            sim: Matcher::new(nfa),
            states: Vec::new(),
            index: HashMap::new(),
        };
        dfa.reset();
        dfa
    }

    /// Empties the cache: only the dead and the start state remain.
    fn reset(&mut self) {
        self.states.clear();
        self.index.clear();
        self.intern(Vec::new(), None);
        self.sim.begin();
        let start = self.sim.current.clone();
        self.intern(start, None);
    }

    fn intern(&mut self, mut set: Vec<u32>, accept: Option<u16>) -> u32 {
        set.sort_unstable();
        let key = (set, accept);
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        let id = self.states.len() as u32;
        self.states.push(DfaState {
            set: key.0.clone(),
            accept,
            ascii: Box::new([UNKNOWN; 128]),
        });
        self.index.insert(key, id);
        id
    }

    /// The state after `state` reads unit `u`.
    fn next(&mut self, state: u32, u: u16) -> u32 {
        let ascii = usize::from(u) < 128;
        if ascii {
            let cached = self.states[state as usize].ascii[usize::from(u)];
            if cached != UNKNOWN {
                return cached;
            }
        }
        self.sim.current.clear();
        self.sim
            .current
            .extend_from_slice(&self.states[state as usize].set);
        let accept = self.sim.step(u);
        let target = if self.sim.current.is_empty() && accept.is_none() {
            DEAD
        } else {
            let set = self.sim.current.clone();
            self.intern(set, accept)
        };
        if ascii {
            self.states[state as usize].ascii[usize::from(u)] = target;
        }
        target
    }

    /// Longest match starting at `start`: `(end, rule)`, the first rule among those
    /// matching the longest length. `None` when no rule matches a non-empty prefix.
    pub(super) fn longest(&mut self, input: &[u16], start: usize) -> Option<(usize, u16)> {
        if self.states.len() > MAX_STATES {
            self.reset();
        }
        let mut state = START;
        let mut best = None;
        for (pos, &u) in input.iter().enumerate().skip(start) {
            state = self.next(state, u);
            if state == DEAD {
                break;
            }
            if let Some(rule) = self.states[state as usize].accept {
                best = Some((pos + 1, rule));
            }
        }
        best
    }
}

/// Simulation state of an [`Nfa`]: the current set of unit states.
pub(super) struct Matcher<'a> {
    nfa: &'a Nfa,
    current: Vec<u32>,
    next: Vec<u32>,
    /// Generation stamp per state, to visit each state once per step.
    seen: Vec<u32>,
    generation: u32,
    stack: Vec<u32>,
}

impl<'a> Matcher<'a> {
    pub(super) fn new(nfa: &'a Nfa) -> Matcher<'a> {
        Matcher {
            nfa,
            current: Vec::new(),
            next: Vec::new(),
            seen: vec![0; nfa.states.len()],
            generation: 0,
            stack: Vec::new(),
        }
    }

    /// Resets to the start state; returns the best rule accepting the empty string.
    fn begin(&mut self) -> Option<u16> {
        self.current.clear();
        self.generation += 1;
        let mut targets = std::mem::take(&mut self.current);
        let accept = self.close(self.nfa.start, &mut targets);
        self.current = targets;
        accept
    }

    /// Consumes unit `u`; returns the best (lowest-numbered) rule accepting right after it.
    fn step(&mut self, u: u16) -> Option<u16> {
        self.generation += 1;
        let mut targets = std::mem::take(&mut self.next);
        targets.clear();
        let mut accept: Option<u16> = None;
        for i in 0..self.current.len() {
            let s = self.current[i];
            if let State::Unit { class, next } = self.nfa.states[s as usize] {
                if self.nfa.classes[class as usize].contains(u) {
                    if let Some(rule) = self.close(next, &mut targets) {
                        accept = Some(accept.map_or(rule, |a| a.min(rule)));
                    }
                }
            }
        }
        self.next = std::mem::replace(&mut self.current, targets);
        accept
    }

    /// Adds the unit states epsilon-reachable from `from` to `targets`; returns the best
    /// rule accepting among the reached states.
    fn close(&mut self, from: u32, targets: &mut Vec<u32>) -> Option<u16> {
        let mut accept: Option<u16> = None;
        self.stack.clear();
        self.stack.push(from);
        while let Some(s) = self.stack.pop() {
            let seen = &mut self.seen[s as usize];
            if *seen == self.generation {
                continue;
            }
            *seen = self.generation;
            match &self.nfa.states[s as usize] {
                State::Unit { .. } => targets.push(s),
                State::Fork(next) => self.stack.extend(next.iter().rev()),
                State::Accept(rule) => accept = Some(accept.map_or(*rule, |a| a.min(*rule))),
            }
        }
        accept
    }
}

/// Combinators that build [`Re`] values.
pub(super) mod build {
    use super::{Class, Re};

    /// One unit of the class `spec` (see [`Class::of`]).
    pub fn class(spec: &str) -> Re {
        Re::Unit(Class::of(spec))
    }

    /// One unit not in the class `spec`.
    pub fn not_class(spec: &str) -> Re {
        Re::Unit(Class::of(spec).not())
    }

    /// One unit for which `pred` holds.
    pub fn unit(pred: fn(u16) -> bool) -> Re {
        Re::Unit(Class::with(pred))
    }

    /// Any one unit (`[^]`).
    pub fn any() -> Re {
        Re::Unit(Class::of("").not())
    }

    /// The text `s` ignoring ASCII case (JFlex `%caseless` applies to every literal).
    pub fn lit(s: &str) -> Re {
        Re::Seq(
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        let (lo, up) = (c.to_ascii_lowercase(), c.to_ascii_uppercase());
                        Re::Unit(Class::of(&format!("{lo}{up}")))
                    } else {
                        exact_char(c)
                    }
                })
                .collect(),
        )
    }

    /// The text `s`, case-sensitively (a sequence of one-character classes).
    pub fn exact(s: &str) -> Re {
        Re::Seq(s.chars().map(exact_char).collect())
    }

    fn exact_char(c: char) -> Re {
        let mut class = Class::of("");
        class.add_range(c as u32, c as u32);
        Re::Unit(class)
    }

    /// Any of the texts in `words`, ignoring ASCII case.
    pub fn words(words: &[&str]) -> Re {
        Re::Alt(words.iter().map(|w| lit(w)).collect())
    }

    pub fn seq<const N: usize>(items: [Re; N]) -> Re {
        Re::Seq(items.into())
    }

    pub fn alt<const N: usize>(items: [Re; N]) -> Re {
        Re::Alt(items.into())
    }

    pub fn opt(re: Re) -> Re {
        Re::Repeat(Box::new(re), 0, Some(1))
    }

    pub fn star(re: Re) -> Re {
        Re::Repeat(Box::new(re), 0, None)
    }

    pub fn plus(re: Re) -> Re {
        Re::Repeat(Box::new(re), 1, None)
    }

    pub fn rep(re: Re, min: u32, max: u32) -> Re {
        Re::Repeat(Box::new(re), min, Some(max))
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn units(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn longest_match_then_first_rule() {
        let nfa = Nfa::new(&[
            lit("ab"),
            seq([class("a-z"), star(class("a-z"))]),
            lit("abc"),
        ]);
        let mut m = Dfa::new(&nfa);
        assert_eq!(m.longest(&units("ab "), 0), Some((2, 0)));
        assert_eq!(m.longest(&units("abc"), 0), Some((3, 1)));
        assert_eq!(m.longest(&units("ABx"), 0), Some((2, 0)));
        assert_eq!(m.longest(&units(" a"), 0), None);
        assert_eq!(m.longest(&units(" a"), 1), Some((2, 1)));
    }

    #[test]
    fn classes_and_repeats() {
        let c = Class::of("a-c-");
        assert!(c.contains(u16::from(b'b')) && c.contains(u16::from(b'-')));
        assert!(!c.contains(u16::from(b'd')));
        let range = Class::of(",-_");
        assert!(range.contains(u16::from(b'5')) && !range.contains(u16::from(b'a')));
        let nfa = Nfa::new(&[rep(exact("ab"), 1, 2)]);
        assert_eq!(nfa.ends(&units("ababab"), 0, 6), vec![2, 4]);
        assert!(nfa.matches_exactly(&units("abab"), 0, 4));
        assert!(!nfa.matches_exactly(&units("aba"), 0, 3));
        let neg = Nfa::new(&[plus(not_class(" ."))]);
        assert_eq!(
            Dfa::new(&neg).longest(&units("x\u{4e2d}y.z"), 0),
            Some((3, 0))
        );
    }
}
