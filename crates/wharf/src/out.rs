//! Standard output for the CLI verbs. When the reader goes away (`wharf ops | head`) the program
//! ends quietly, as other command line tools do, instead of panicking in `println!`.

use std::io::Write;

/// `println!` that ends the program quietly when stdout is a closed pipe.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that ends the program quietly when stdout is a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        failed(e);
    }
}

/// Writes bytes as they come (a log stream) and flushes them.
pub(crate) fn bytes(b: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(b).and_then(|()| stdout.flush()) {
        failed(e);
    }
}

fn failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // Nobody reads any more: nothing left to do, and nothing worth saying.
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}
