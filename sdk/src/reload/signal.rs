//! SIGHUP as a reload trigger for the watcher (unix; elsewhere it never fires).

/// A stream of SIGHUPs, or nothing when turned off.
#[derive(Debug)]
pub(super) struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Installs the SIGHUP handler when `enabled` (unix only). Must run inside a tokio runtime
    /// whose I/O driver is enabled. Once installed, tokio keeps SIGHUP handled for the life of
    /// the process: a SIGHUP no longer terminates it, even after the watcher stops.
    pub(super) fn new(enabled: bool) -> std::io::Result<Hangup> {
        #[cfg(unix)]
        {
            let signal = if enabled {
                Some(tokio::signal::unix::signal(
                    tokio::signal::unix::SignalKind::hangup(),
                )?)
            } else {
                None
            };
            Ok(Hangup { signal })
        }
        #[cfg(not(unix))]
        {
            let _ = enabled;
            Ok(Hangup {})
        }
    }

    /// Whether SIGHUP is handled.
    pub(super) fn enabled(&self) -> bool {
        #[cfg(unix)]
        {
            self.signal.is_some()
        }
        #[cfg(not(unix))]
        {
            false
        }
    }

    /// Waits for the next SIGHUP (several delivered before this call count as one); pends
    /// forever when SIGHUP is not handled.
    pub(super) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}
