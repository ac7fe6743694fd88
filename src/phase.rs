//! A stage's phases as an enum, and the one small runner both stages share: beginning a phase
//! sends one `running` event (and console line), a failure is reported at the phase that was
//! running, and the final `done` closes the list.

use crate::report::{Reporter, Status};

/// The phases of one stage, in order. A phase's step in events is its 1-based position.
pub trait Phase: Copy + PartialEq + std::fmt::Debug + 'static {
    const ALL: &'static [Self];

    /// The stable name in events and banners.
    fn name(self) -> &'static str;

    fn step(self) -> u32 {
        Self::ALL
            .iter()
            .position(|p| *p == self)
            .map_or(0, |i| i + 1) as u32
    }

    fn total() -> u32 {
        Self::ALL.len() as u32
    }
}

/// Tracks the running phase of a stage and reports through its [`Reporter`].
pub struct Phases<P: Phase> {
    pub reporter: Reporter,
    current: P,
}

impl<P: Phase> Phases<P> {
    /// Nothing has begun yet; a failure before the first [`Phases::begin`] is the first phase's.
    pub fn new(reporter: Reporter) -> Self {
        Self {
            reporter,
            current: P::ALL[0],
        }
    }

    pub fn current(&self) -> P {
        self.current
    }

    /// Starts `phase`: one `running` event and console line.
    pub fn begin(&mut self, phase: P, message: &str) {
        self.current = phase;
        self.reporter.event(
            phase.name(),
            phase.step(),
            P::total(),
            Status::Running,
            message,
            None,
        );
    }

    /// The `failed` event at the running phase, with `error`'s text and reason.
    pub fn failed(&mut self, message: &str, error: &crate::Error) {
        let phase = self.current;
        self.reporter.event(
            phase.name(),
            phase.step(),
            P::total(),
            Status::Failed,
            message,
            Some(error),
        );
    }

    /// The last event of a stage, so a webhook consumer can stop at `done`.
    pub fn done(&mut self, message: &str) {
        self.reporter
            .event("done", P::total(), P::total(), Status::Done, message, None);
    }

    pub fn line(&mut self, line: &str) {
        self.reporter.line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::MemorySink;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Demo {
        Plan,
        Download,
        Jump,
    }

    impl Phase for Demo {
        const ALL: &'static [Self] = &[Self::Plan, Self::Download, Self::Jump];
        fn name(self) -> &'static str {
            match self {
                Self::Plan => "plan",
                Self::Download => "download",
                Self::Jump => "jump",
            }
        }
    }

    #[test]
    fn a_phase_begins_at_its_position_and_a_failure_names_the_running_one() {
        let mem = MemorySink::default();
        let mut phases = Phases::<Demo>::new(Reporter::new(1, vec![Box::new(mem.clone())]));
        assert_eq!(phases.current(), Demo::Plan);
        phases.begin(Demo::Download, "fetching");
        phases.failed("stopped", &crate::Error::Other("no route to host".into()));
        phases.done("finished");
        assert_eq!(
            mem.lines(),
            vec![
                "nixos-lift: [2/3] fetching ...",
                "nixos-lift: failed at [2/3] download: no route to host",
                "nixos-lift: done: finished",
            ]
        );
        assert_eq!(Demo::Jump.step(), 3);
    }
}
