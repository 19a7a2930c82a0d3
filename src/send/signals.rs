//! SIGTERM and SIGINT: the first stops claiming and lets what is in flight finish and be
//! recorded; the second exits at once (the next run sends what was in flight again, flagged).

use tokio::sync::watch;

/// SIGTERM or SIGINT: stop claiming, finish what is in flight. A second one aborts at once.
pub(super) struct StopSignal {
    receiver: watch::Receiver<bool>,
}

impl StopSignal {
    pub(super) fn install() -> StopSignal {
        let (sender, receiver) = watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            for count in 0.. {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if count > 0 {
                    crate::exit::print_err(
                        "send: second signal: aborting; the next run sends what was in flight again",
                    );
                    std::process::exit(130);
                }
                tracing::warn!(
                    "signal received: finishing what is in flight, claiming nothing new"
                );
                let _ = sender.send(true);
            }
        });
        StopSignal { receiver }
    }

    pub(super) fn receiver(&self) -> watch::Receiver<bool> {
        self.receiver.clone()
    }
}
