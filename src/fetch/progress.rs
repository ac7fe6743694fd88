//! The installer download's progress: a redrawn bar on an interactive terminal, otherwise one
//! log line per 10 % (`crate::terminal` says which stderr is).

pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    have: u64,
    total: Option<u64>,
    next_tenth: u64,
}

impl Progress {
    pub(crate) fn new() -> Self {
        let bar = crate::terminal::Stderr::current().draws_bar().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self::with_bar(bar)
    }

    fn with_bar(bar: Option<indicatif::ProgressBar>) -> Self {
        Self {
            bar,
            have: 0,
            total: None,
            next_tenth: 1,
        }
    }

    /// The announced length of the whole download.
    pub(crate) fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }

    pub(crate) fn update(&mut self, more: u64) {
        for percent in self.advance(more) {
            tracing::info!(
                "downloading the installer: {percent} % ({} of {} MiB)",
                self.have >> 20,
                self.total.unwrap_or(0) >> 20
            );
        }
    }

    /// Counts `more` bytes; returns the multiples of 10 % passed by them (none with a bar, or
    /// without a known length), each once.
    fn advance(&mut self, more: u64) -> Vec<u64> {
        self.have += more;
        if let Some(bar) = &self.bar {
            if let Some(t) = self.total {
                bar.set_length(t);
            }
            bar.set_position(self.have);
            return Vec::new();
        }
        let Some(t) = self.total.filter(|t| *t > 0) else {
            return Vec::new();
        };
        let mut passed = Vec::new();
        while self.next_tenth <= 10 && self.have * 10 >= t * self.next_tenth {
            passed.push(self.next_tenth * 10);
            self.next_tenth += 1;
        }
        passed
    }

    pub(crate) fn finish(&self, have: u64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!("downloaded the installer: {} MiB", have >> 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_once_per_tenth_even_across_big_chunks() {
        let mut p = Progress::with_bar(None);
        assert_eq!(p.advance(100), Vec::<u64>::new(), "no length yet");
        p.set_total(1000);
        assert_eq!(p.advance(0), vec![10]);
        assert_eq!(p.advance(50), Vec::<u64>::new());
        assert_eq!(p.advance(49), Vec::<u64>::new());
        assert_eq!(p.advance(101), vec![20, 30]);
        assert_eq!(p.advance(699), vec![40, 50, 60, 70, 80, 90]);
        assert_eq!(p.advance(1), vec![100]);
        assert_eq!(p.advance(500), Vec::<u64>::new(), "100 % once");
    }
}
