//! The open-file limit. Every client connection, upstream connection and served file takes a
//! descriptor, and the usual soft limit (1024) is far below what the kernel allows the process
//! (the hard limit): raise it once at start, as nginx's `worker_rlimit_nofile` and Go's runtime do.

/// The soft open-file limit before and after [`raise_open_file_limit`] (`None`: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: Option<u64>,
    pub now: Option<u64>,
}

/// Raises the soft limit on open files to the hard limit, for the whole process.
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if limit.current == limit.maximum {
        return Ok(OpenFileLimit {
            before,
            now: before,
        });
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised)?;
    Ok(OpenFileLimit {
        before,
        now: limit.maximum,
    })
}
