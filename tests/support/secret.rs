//! The webhook signing secret every service the tests start trusts, the
//! in-process one and the real binary alike.

pub const SECRET: &str = "test-signing-secret";
