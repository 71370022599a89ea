//! Property tests of the system compiler.
