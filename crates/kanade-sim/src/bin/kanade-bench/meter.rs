//! What a scenario cost: CPU time per component (from `/proc`) and the messages the broker
//! moved (its `/varz` `in_msgs` + `out_msgs`: every message a client published and every one the
//! server delivered, JetStream API calls, acks and direct gets included). A fleet at rest is not
//! silent (10,000 agents beat every 30 s, and each beat is delivered to several subscribers), so a
//! scenario's cost is what it spent minus what the same components spend idle over as long,
//! measured just before it.

use std::time::Duration;

use crate::procs::cpu_time;

/// The processes of each component, and the broker's monitoring port.
pub struct Meter {
    pub components: Vec<(&'static str, Vec<u32>)>,
    pub monitor: u16,
}

#[derive(Debug, Clone)]
pub struct Reading {
    cpu: Vec<Duration>,
    msgs: u64,
}

/// The difference between two readings.
#[derive(Debug, Clone, Default)]
pub struct Spent {
    /// CPU time per component, in [`Meter::components`] order.
    pub cpu: Vec<Duration>,
    pub msgs: u64,
}

impl Meter {
    pub fn read(&self) -> Reading {
        let cpu =
            self.components.iter().map(|(_, pids)| pids.iter().filter_map(|&p| cpu_time(p)).sum()).collect();
        Reading { cpu, msgs: broker_msgs(self.monitor).unwrap_or(0) }
    }
}

impl Spent {
    /// CPU time of every component together.
    pub fn total_cpu(&self) -> Duration {
        self.cpu.iter().sum()
    }

    /// What is left of `self` (spent over `took`) after `idle` (spent at rest over `idle_for`)
    /// is taken out at its rate.
    pub fn minus_idle(&self, took: Duration, idle: &Spent, idle_for: Duration) -> Spent {
        let share = took.as_secs_f64() / idle_for.as_secs_f64().max(1e-6);
        Spent {
            cpu: self.cpu.iter().zip(&idle.cpu).map(|(c, i)| c.saturating_sub(i.mul_f64(share))).collect(),
            msgs: self.msgs.saturating_sub((idle.msgs as f64 * share).round() as u64),
        }
    }
}

impl Reading {
    pub fn since(&self, before: &Reading) -> Spent {
        Spent {
            cpu: self.cpu.iter().zip(&before.cpu).map(|(a, b)| a.saturating_sub(*b)).collect(),
            msgs: self.msgs.saturating_sub(before.msgs),
        }
    }
}

/// Messages in + out since the broker started.
pub fn broker_msgs(monitor: u16) -> Result<u64, String> {
    let (status, body) = kanade_testkit::http::request(monitor, "GET", "/varz", b"", "text/plain")?;
    if status != 200 {
        return Err(format!("/varz answered {status}"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("/varz is not JSON: {e}"))?;
    Ok(v["in_msgs"].as_u64().unwrap_or(0) + v["out_msgs"].as_u64().unwrap_or(0))
}

/// The median of each field over rounds (CPU per component, messages).
pub fn median(spent: &[Spent]) -> Spent {
    let mid = |mut v: Vec<u128>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let parts = spent.first().map_or(0, |s| s.cpu.len());
    Spent {
        cpu: (0..parts)
            .map(|i| Duration::from_micros(mid(spent.iter().map(|s| s.cpu[i].as_micros()).collect()) as u64))
            .collect(),
        msgs: mid(spent.iter().map(|s| u128::from(s.msgs)).collect()) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_cost_is_taken_out_at_its_rate_and_never_below_zero() {
        let ms = Duration::from_millis;
        let spent = Spent { cpu: vec![ms(1000), ms(100)], msgs: 50_000 };
        let idle = Spent { cpu: vec![ms(100), ms(500)], msgs: 1_000 };
        // Idle measured over 2 s, the scenario took 4 s: twice the idle cost comes off.
        let net = spent.minus_idle(Duration::from_secs(4), &idle, Duration::from_secs(2));
        assert_eq!(net.cpu, vec![ms(800), ms(0)]);
        assert_eq!(net.msgs, 48_000);
    }
}
