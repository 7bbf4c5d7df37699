//! Identity: one `User` aggregate behind every auth API dialect.

mod common_passwords;
pub mod user;
pub mod values;

pub use user::{Decision, LoginAdmission, User, UserEvent, STREAM_TYPE};
pub use values::{CodePurpose, Email, Password, Role, Username};

/// Failed logins allowed before the account locks.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// Wrong tries that kill a one-time code.
pub const MAX_CODE_TRIES: u32 = 5;
/// Reference (invite) mails a user may send per day.
pub const INVITES_PER_DAY: usize = 20;

/// How long the account stays locked after `failures` consecutive failures:
/// one minute at the fifth, doubling, at most fifteen minutes.
pub fn lockout_secs(failures: u32) -> i64 {
    if failures < MAX_FAILED_LOGINS {
        return 0;
    }
    let doublings = (failures - MAX_FAILED_LOGINS).min(10);
    (60i64 << doublings).min(15 * 60)
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_grows_and_caps() {
        assert_eq!(lockout_secs(4), 0);
        assert_eq!(lockout_secs(5), 60);
        assert_eq!(lockout_secs(6), 120);
        assert_eq!(lockout_secs(9), 900);
        assert_eq!(lockout_secs(40), 900);
    }
}
