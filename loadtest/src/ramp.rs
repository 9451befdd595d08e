//! `--ramp "0:100,30:2000,60:2000"`: an open-model arrival rate that changes over time,
//! linear between the given `seconds:rate` points and constant after the last one.

use std::fmt;

use crate::error::Error;

/// A piecewise-linear arrival rate (arrivals per second by seconds since the start).
#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    /// `(seconds, rate)`, the first at 0 s, strictly increasing in time.
    points: Vec<(f64, f64)>,
}

impl Ramp {
    /// A constant rate (the plain `--rate` open model).
    pub fn constant(rate: f64) -> Ramp {
        Ramp {
            points: vec![(0.0, rate)],
        }
    }

    /// Parses `seconds:rate[,seconds:rate...]`. The first point must be at 0 s, times must
    /// increase, rates must be finite and not negative, and the last rate must be positive
    /// (otherwise the remaining devices would never arrive).
    pub fn parse(spec: &str) -> Result<Ramp, Error> {
        let bad = |reason: String| Error::BadRamp {
            spec: spec.to_string(),
            reason,
        };
        let mut points: Vec<(f64, f64)> = Vec::new();
        for part in spec.split(',') {
            let part = part.trim();
            let (t, r) = part
                .split_once(':')
                .ok_or_else(|| bad(format!("{part:?} is not seconds:rate")))?;
            let t: f64 = t
                .trim()
                .parse()
                .map_err(|_| bad(format!("{t:?} is not a number of seconds")))?;
            let r: f64 = r
                .trim()
                .parse()
                .map_err(|_| bad(format!("{r:?} is not a rate")))?;
            if !t.is_finite() || t < 0.0 {
                return Err(bad(format!("time {t} must be 0 or more seconds")));
            }
            if !r.is_finite() || r < 0.0 {
                return Err(bad(format!("rate {r} must be 0 or more per second")));
            }
            match points.last() {
                None if t != 0.0 => {
                    return Err(bad(format!("the first point must be at 0 s, not {t} s")));
                }
                Some(&(prev, _)) if t <= prev => {
                    return Err(bad(format!("times must increase: {t} s after {prev} s")));
                }
                _ => {}
            }
            points.push((t, r));
        }
        match points.last() {
            Some(&(_, r)) if r > 0.0 => Ok(Ramp { points }),
            _ => Err(bad(
                "the last rate must be positive (it holds until every device arrived)".into(),
            )),
        }
    }

    /// The `(seconds, rate)` points.
    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// The arrival rate `t` seconds after the start.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut prev = self.points[0];
        for &(t1, r1) in &self.points[1..] {
            if t < t1 {
                let (t0, r0) = prev;
                return r0 + (r1 - r0) * (t - t0) / (t1 - t0);
            }
            prev = (t1, r1);
        }
        prev.1
    }

    /// Arrivals due in the first `t` seconds (the integral of the rate).
    pub fn arrivals_by(&self, t: f64) -> f64 {
        let mut total = 0.0;
        let mut prev = self.points[0];
        for &(t1, r1) in &self.points[1..] {
            let (t0, r0) = prev;
            if t <= t1 {
                let end = t.max(t0);
                return total + (r0 + self.rate_at(end)) / 2.0 * (end - t0);
            }
            total += (r0 + r1) / 2.0 * (t1 - t0);
            prev = (t1, r1);
        }
        total + prev.1 * (t - prev.0).max(0.0)
    }

    /// The time in seconds at which arrival number `k` (from 0) is due: the first `t` with
    /// `arrivals_by(t) >= k`.
    pub fn time_of_arrival(&self, k: f64) -> f64 {
        let (t_last, r_last) = *self.points.last().expect("a ramp has points");
        let by_last = self.arrivals_by(t_last);
        if k >= by_last {
            // After the last point the rate is constant: exact.
            return t_last + (k - by_last) / r_last;
        }
        // Before it, `arrivals_by` is monotone: bisect to well below a microsecond.
        let (mut lo, mut hi) = (0.0, t_last);
        for _ in 0..64 {
            let mid = (lo + hi) / 2.0;
            if self.arrivals_by(mid) >= k {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }
}

impl fmt::Display for Ramp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .points
            .iter()
            .map(|(t, r)| format!("{t}:{r}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn parses_and_prints() {
        let r = Ramp::parse("0:100, 30:2000,60:2000").unwrap();
        assert_eq!(r.points(), &[(0.0, 100.0), (30.0, 2000.0), (60.0, 2000.0)]);
        assert_eq!(r.to_string(), "0:100,30:2000,60:2000");
        assert_eq!(Ramp::parse("0:5").unwrap(), Ramp::constant(5.0));
    }

    #[test]
    fn bad_ramps_say_why() {
        for (spec, why) in [
            ("", "not seconds:rate"),
            ("0:100,30", "not seconds:rate"),
            ("5:100", "first point must be at 0 s"),
            ("0:100,30:200,20:300", "times must increase"),
            ("0:100,0:200", "times must increase"),
            ("0:x", "not a rate"),
            ("a:1", "not a number of seconds"),
            ("0:-1", "0 or more per second"),
            ("0:100,10:0", "last rate must be positive"),
            ("0:inf", "0 or more per second"),
        ] {
            let err = Ramp::parse(spec).unwrap_err().to_string();
            assert!(err.contains(why), "{spec:?}: {err}");
        }
    }

    #[test]
    fn rate_is_linear_between_points_and_holds_after() {
        let r = Ramp::parse("0:100,30:2000,60:2000,70:1000").unwrap();
        assert!(close(r.rate_at(0.0), 100.0));
        assert!(close(r.rate_at(15.0), 1050.0));
        assert!(close(r.rate_at(30.0), 2000.0));
        assert!(close(r.rate_at(45.0), 2000.0));
        assert!(close(r.rate_at(65.0), 1500.0));
        assert!(close(r.rate_at(500.0), 1000.0));
    }

    #[test]
    fn arrivals_integrate_the_rate_and_invert() {
        let r = Ramp::parse("0:0,10:100").unwrap();
        // Triangle: 0.5 * 10 s * 100/s.
        assert!(close(r.arrivals_by(10.0), 500.0));
        assert!(close(r.arrivals_by(5.0), 125.0));
        assert!(close(r.arrivals_by(12.0), 700.0));
        for k in [0.0, 1.0, 125.0, 499.0, 500.0, 700.0] {
            assert!(close(r.arrivals_by(r.time_of_arrival(k)), k), "{k}");
        }
        assert!(close(r.time_of_arrival(125.0), 5.0));
        let c = Ramp::constant(200.0);
        assert!(close(c.time_of_arrival(20.0), 0.1));
        assert!(close(c.arrivals_by(0.5), 100.0));
    }
}
