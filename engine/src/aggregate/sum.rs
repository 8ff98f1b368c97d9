//! Exact, order-independent `sum` and `avg`: a sparse fixed-point superaccumulator.
//!
//! Every finite `f64` is an integer multiple of 2^-1074 below 2^1024, and every `i64` is an
//! integer, so their exact sum is an integer multiple of 2^-1074 that a two's complement integer
//! of at most 35 64-bit limbs holds without loss. The accumulator keeps only the limbs that the
//! inputs touched (typically 2–3), adds with integer carries (exact, so associative and
//! commutative), and rounds once, correctly (to nearest, ties to even), when the result is read.
//! The result is therefore a pure function of the multiset of inputs: any fold order and any merge
//! tree give the same bits.
//!
//! Why not a crate: `fsum` (Shewchuk partials, like Python's `math.fsum`) has no serde and no
//! merge, and an intermediate partial can overflow to infinity for large inputs, which makes the
//! result order-dependent (`[1e308, 1e308, -1e308]`); `accurate`'s `OnlineExactSum` keeps two
//! 2048-entry `f64` arrays (32 KiB) per state and has no serde. Integer limbs have neither problem.

use serde::{Deserialize, Serialize};

/// Bits per limb.
const LIMB_BITS: i32 = 64;
/// The sign limb of a negative value.
const NEG: u64 = u64::MAX;

/// The state of a `sum` or `avg`: how many values were folded, whether all were integers, and
/// their exact sum.
///
/// The sum is `Σ limbs[i] · 2^(64·(lo + i))`, read as a little-endian two's complement integer
/// whose last limb is always a sign limb (`0` or `u64::MAX`); no limbs means zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumState {
    /// Number of (non-null) values folded in.
    count: u64,
    /// Limbs of the exact sum, lowest first; the last one is the sign limb.
    limbs: Box<[u64]>,
    /// Limb index of `limbs[0]`: limb `k` holds the bits of weight 2^(64k) to 2^(64k+63).
    lo: i16,
    /// Whether every value folded in was a JSON integer (`Value::Int`); decides the output type.
    all_int: bool,
}

impl Default for SumState {
    fn default() -> Self {
        Self { count: 0, limbs: Box::default(), lo: 0, all_int: true }
    }
}

impl SumState {
    /// Number of values folded in.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Folds in an integer.
    pub fn add_i64(&mut self, value: i64) {
        self.count += 1;
        if value != 0 {
            self.add_scaled(value.unsigned_abs(), 0, value < 0);
        }
    }

    /// Folds in a finite double (the caller rejects NaN and infinities).
    pub fn add_f64(&mut self, value: f64) {
        debug_assert!(value.is_finite());
        self.count += 1;
        self.all_int = false;
        let bits = value.to_bits();
        let biased_exp = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1 << 52) - 1);
        let (mantissa, exp) = if biased_exp == 0 {
            (fraction, -1074) // zero or subnormal
        } else {
            (fraction | (1 << 52), biased_exp - 1075)
        };
        if mantissa != 0 {
            self.add_scaled(mantissa, exp, bits >> 63 == 1);
        }
    }

    /// Adds the state of another partial aggregate of the same field.
    pub fn merge(&mut self, other: &SumState) {
        self.count += other.count;
        self.all_int &= other.all_int;
        if let Some((&sign, body)) = other.limbs.split_last() {
            self.add_limbs(i32::from(other.lo), body, sign);
        }
    }

    /// Adds `±mantissa · 2^exp`.
    fn add_scaled(&mut self, mantissa: u64, exp: i32, negative: bool) {
        let limb = exp.div_euclid(LIMB_BITS);
        let shifted = u128::from(mantissa) << exp.rem_euclid(LIMB_BITS);
        let (bits, sign) = if negative { (shifted.wrapping_neg(), NEG) } else { (shifted, 0) };
        // Fast path: the two limbs are covered, with at least the sign limb above them.
        let start = limb - i32::from(self.lo);
        if start >= 0 && (start as usize) + 2 < self.limbs.len() {
            let start = start as usize;
            let current = u128::from(self.limbs[start]) | u128::from(self.limbs[start + 1]) << 64;
            let (total, carry) = current.overflowing_add(bits);
            self.limbs[start] = total as u64;
            self.limbs[start + 1] = (total >> 64) as u64;
            // Above these limbs the operand adds its sign extension (0 or -1) plus the carry.
            match (sign, carry) {
                (0, true) => self.add_limbs(limb + 2, &[1], 0),
                (NEG, false) => self.add_limbs(limb + 2, &[], NEG),
                _ => {}
            }
            return;
        }
        self.add_limbs(limb, &[bits as u64, (bits >> 64) as u64], sign);
    }

    /// Adds the two's complement integer `body` (limb `lo` first) sign-extended with `sign`.
    fn add_limbs(&mut self, lo: i32, body: &[u64], sign: u64) {
        // Cover the operand plus one limb of headroom, so the sum of two values that each fit
        // below their sign limb cannot overflow the new width.
        let top = lo + body.len() as i32 + 1;
        self.cover(lo, top);
        let start = (lo - i32::from(self.lo)) as usize;
        let mut carry = false;
        for (i, limb) in self.limbs[start..].iter_mut().enumerate() {
            let operand = match body.get(i) {
                Some(&b) => b,
                // Past the operand, adding its sign extension changes nothing once the carry has
                // settled: 0 + no carry, or u64::MAX + carry (= 2^64).
                None if (sign == 0) != carry => break,
                None => sign,
            };
            let (s1, c1) = limb.overflowing_add(operand);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *limb = s2;
            carry = c1 || c2;
        }
        let last = *self.limbs.last().expect("cover() made limbs non-empty");
        if last != 0 && last != NEG {
            let sign = if (last as i64) < 0 { NEG } else { 0 };
            let hi = i32::from(self.lo) + self.limbs.len() as i32 + 1;
            self.cover(i32::from(self.lo), hi);
            *self.limbs.last_mut().expect("non-empty") = sign;
        }
    }

    /// Widens the limbs to cover at least limb indices `lo..hi`, sign-extending upwards.
    fn cover(&mut self, lo: i32, hi: i32) {
        let (cur_lo, cur_hi) = (i32::from(self.lo), i32::from(self.lo) + self.limbs.len() as i32);
        if !self.limbs.is_empty() && lo >= cur_lo && hi <= cur_hi {
            return;
        }
        let (new_lo, new_hi) =
            if self.limbs.is_empty() { (lo, hi) } else { (lo.min(cur_lo), hi.max(cur_hi)) };
        let mut limbs = vec![0; (new_hi - new_lo) as usize];
        if let Some(&sign) = self.limbs.last() {
            let offset = (cur_lo - new_lo) as usize;
            limbs[offset..offset + self.limbs.len()].copy_from_slice(&self.limbs);
            limbs[offset + self.limbs.len()..].fill(sign);
        }
        self.limbs = limbs.into_boxed_slice();
        self.lo = i16::try_from(new_lo).expect("limb index of a finite double fits i16");
    }

    /// The exact sum times 2^(64·`scale_limbs`), correctly rounded to the nearest `f64` (ties to
    /// even); ±infinity when that is beyond the `f64` range.
    fn to_f64_scaled(&self, scale_limbs: i32) -> f64 {
        let Some(&sign) = self.limbs.last() else {
            return 0.0;
        };
        let mut magnitude = self.limbs.to_vec();
        if sign == NEG {
            negate(&mut magnitude);
        }
        let Some(h) = magnitude.iter().rposition(|&l| l != 0) else {
            return 0.0;
        };
        let top = magnitude[h];
        let lz = top.leading_zeros();
        let below = if h > 0 { magnitude[h - 1] } else { 0 };
        // The 64 most significant bits, with every lower bit folded into a sticky bit 0: 11 bits
        // below the 53 that `as f64` keeps, so its round-to-nearest-even is the correct rounding.
        let (mut head, below_rest) =
            if lz == 0 { (top, below) } else { ((top << lz) | (below >> (64 - lz)), below << lz) };
        if below_rest != 0 || magnitude[..h.saturating_sub(1)].iter().any(|&l| l != 0) {
            head |= 1;
        }
        // Weight of bit 0 of `head`. When the value is below 2^-1022 it is an exact subnormal:
        // every input is a multiple of 2^-1074, so nothing is lost in `head as f64` either.
        let exp = LIMB_BITS * (i32::from(self.lo) + h as i32 + scale_limbs) - lz as i32;
        let value = ldexp(head as f64, exp);
        if sign == NEG {
            -value
        } else {
            value
        }
    }

    /// The exact sum as an `i64`, if it is an integer in range.
    fn to_i64(&self) -> Option<i64> {
        let Some(&sign) = self.limbs.last() else {
            return Some(0);
        };
        let lo = i32::from(self.lo);
        let mut units = 0u64;
        for (i, &limb) in self.limbs.iter().enumerate() {
            match lo + i as i32 {
                k if k < 0 && limb != 0 => return None, // has a fraction
                0 => units = limb,
                k if k > 0 && limb != sign => return None, // beyond 64 bits
                _ => {}
            }
        }
        // Limb 0 must carry the sign too (a limb index above 0 also implies units == 0).
        let value = units as i64;
        ((value < 0) == (sign == NEG)).then_some(value)
    }

    /// The `sum` output: `null` when nothing was folded; an integer when every input was an integer
    /// and the sum fits `i64`; otherwise the correctly rounded double (`null` if it overflows).
    pub fn sum_json(&self) -> serde_json::Value {
        if self.count == 0 {
            return serde_json::Value::Null;
        }
        if self.all_int {
            if let Some(i) = self.to_i64() {
                return i.into();
            }
        }
        float_json(self.to_f64_scaled(0))
    }

    /// The `avg` output: the correctly rounded sum divided by the count (one division), or `null`
    /// when nothing was folded.
    pub fn avg_json(&self) -> serde_json::Value {
        if self.count == 0 {
            return serde_json::Value::Null;
        }
        let count = self.count as f64;
        let sum = self.to_f64_scaled(0);
        if sum.is_finite() {
            float_json(sum / count)
        } else {
            // The sum overflows, the mean may not: divide at a scale of 2^-128 and scale back.
            float_json(ldexp(self.to_f64_scaled(-2) / count, 2 * LIMB_BITS))
        }
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.limbs)
    }
}

/// A finite double as JSON; `null` for infinities (JSON has no infinity).
fn float_json(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into)
}

/// Two's complement negation in place.
fn negate(limbs: &mut [u64]) {
    let mut carry = true;
    for limb in limbs {
        let (v, c) = (!*limb).overflowing_add(u64::from(carry));
        *limb = v;
        carry = c;
    }
}

/// `x · 2^exp` in two exact steps, each factor a normal power of two. Exact whenever the result is
/// a normal double or a subnormal that `x · 2^exp` equals exactly (the only cases used here).
fn ldexp(x: f64, exp: i32) -> f64 {
    let half = exp / 2;
    x * pow2(half) * pow2(exp - half)
}

/// 2^k for k in -1022..=1023.
fn pow2(k: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&k));
    f64::from_bits(((k + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(values: &[f64]) -> f64 {
        let mut s = SumState::default();
        values.iter().for_each(|&v| s.add_f64(v));
        s.to_f64_scaled(0)
    }

    #[test]
    fn sums_are_correctly_rounded() {
        // Cases from CPython's test_math.testfsum.
        let p = |e: i32| 2f64.powi(e);
        let cases: &[(&[f64], f64)] = &[
            (&[], 0.0),
            (&[p(53), -0.5, -p(-54)], p(53) - 1.0),
            (&[p(53), 1.0, p(-100)], p(53) + 2.0),
            (&[p(53) + 10.0, 1.0, p(-100)], p(53) + 12.0),
            (&[p(53) - 4.0, 0.5, p(-54)], p(53) - 3.0),
            (&[1e16, 1.0, 1e-16], 10000000000000002.0),
            (&[1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50], 1e-100),
            (&[0.1; 10], 1.0),
            (&[1.7976931348623157e308, -1.7976931348623157e308], 0.0),
        ];
        for (values, expected) in cases {
            assert_eq!(sum_of(values).to_bits(), expected.to_bits(), "{values:?}");
        }
    }

    #[test]
    fn intermediate_overflow_does_not_depend_on_order() {
        let max = f64::MAX;
        assert_eq!(sum_of(&[max, max, -max]), max);
        assert_eq!(sum_of(&[max, -max, max]), max);
        assert_eq!(sum_of(&[max, max]), f64::INFINITY);
        assert_eq!(sum_of(&[-max, -max]), f64::NEG_INFINITY);
    }

    #[test]
    fn subnormals_are_exact() {
        let tiny = f64::from_bits(1); // 2^-1074
        assert_eq!(sum_of(&[tiny, tiny]), f64::from_bits(2));
        assert_eq!(sum_of(&[tiny, -tiny]), 0.0);
        let min_normal = f64::MIN_POSITIVE;
        assert_eq!(sum_of(&[min_normal, -tiny]), f64::from_bits(min_normal.to_bits() - 1));
        assert_eq!(sum_of(&[1.0, tiny, -1.0]), tiny);
    }

    #[test]
    fn integers_stay_exact_beyond_2_pow_53() {
        let mut s = SumState::default();
        s.add_i64(i64::MAX - 1);
        s.add_i64(1);
        assert_eq!(s.sum_json(), serde_json::json!(i64::MAX));
        s.add_i64(1); // now 2^63: out of i64, falls back to the double
        assert_eq!(s.sum_json(), serde_json::json!(9.223372036854776e18));
        s.add_i64(i64::MIN);
        s.add_i64(i64::MIN);
        assert_eq!(s.sum_json(), serde_json::json!(i64::MIN));
    }

    #[test]
    fn avg_of_huge_values_does_not_overflow() {
        let mut s = SumState::default();
        s.add_f64(f64::MAX);
        s.add_f64(f64::MAX);
        assert_eq!(s.sum_json(), serde_json::Value::Null);
        assert_eq!(s.avg_json(), serde_json::json!(f64::MAX));
    }

    #[test]
    fn limbs_stay_few_for_everyday_values() {
        let mut s = SumState::default();
        for cents in 0..10_000 {
            s.add_f64(f64::from(cents) / 100.0);
        }
        assert_eq!(s.sum_json(), serde_json::json!(499_950.0));
        assert!(s.limbs.len() <= 3, "{} limbs", s.limbs.len());
    }
}
