//! Durations as an operator reads them: "89 days", "3 h 12 min", not humantime's
//! "2months 29days 2h 52m 48s", whose months are 30.44 days.

use std::time::Duration;

/// The two largest units that matter: whole days past two days, else hours and minutes, else
/// minutes and seconds.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (days, hours, minutes, seconds) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match () {
        _ if days >= 2 => format!("{days} days"),
        _ if days == 1 => format!("1 day {hours} h"),
        _ if hours > 0 => format!("{hours} h {minutes} min"),
        _ if minutes > 0 => format!("{minutes} min {seconds} s"),
        _ => format!("{seconds} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::human;
    use std::time::Duration;

    #[test]
    fn reads_like_an_operator_would_say_it() {
        let at = |secs| human(Duration::from_secs(secs));
        assert_eq!(at(89 * 86_400 + 2 * 3_600 + 52 * 60 + 48), "89 days");
        assert_eq!(at(2 * 86_400), "2 days");
        assert_eq!(at(86_400 + 5 * 3_600 + 59), "1 day 5 h");
        assert_eq!(at(3 * 3_600 + 12 * 60 + 7), "3 h 12 min");
        assert_eq!(at(61), "1 min 1 s");
        assert_eq!(at(0), "0 s");
    }
}
