//! Reading `/metrics`.

/// The sum of every series of `name` in a Prometheus text exposition (`name` alone, or with
/// labels: `name{a="b"}` matches that series only); 0 when there is none.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            *series == name
                || series
                    .strip_prefix(name)
                    .is_some_and(|labels| labels.starts_with('{'))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}
