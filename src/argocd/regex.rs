//! Argo CD's `regex` match mode: casbin's `util.RegexMatch(key1, key2)`, which is Go's
//! `regexp.MatchString(pattern, text)`: RE2 syntax, unanchored (`applications` also matches
//! `myapplications`; anchor with `^…$`). An invalid pattern makes casbin panic, which it turns
//! into an error, so the whole enforcement that reaches the pattern answers "denied".
//!
//! The `regex` crate implements the same RE2 syntax and semantics (linear time, leftmost-first,
//! Unicode classes and simple case folding); its error messages are its own, not Go's. Where
//! Go's parser reads a pattern differently, `as_go_reads` first makes it read the same: a `{`
//! that starts no repetition is a literal; a repetition of a repetition (`a**`) is refused, and
//! so is a repeat count over 1000; in a class, `[` (but `[:alpha:]`), `&&`, `--` and `~~` are
//! literals (the crate nests classes and has set operations); a repetition after a flags group
//! (`a(?i)*`) repeats what came before the group.

/// A pattern the regex syntax refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error parsing regexp: {0}")]
pub struct RegexError(pub String);

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex(regex::Regex);

impl Regex {
    pub fn new(pattern: &str) -> Result<Self, RegexError> {
        regex::Regex::new(&as_go_reads(pattern)?)
            .map(Regex)
            .map_err(|error| RegexError(first_line(&error.to_string())))
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

/// The crate's messages draw the pattern with a caret over several lines; one line suffices.
fn first_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .rfind(|line| line.starts_with("error:"))
        .map_or_else(
            || message.trim().to_string(),
            |line| line.trim_start_matches("error:").trim().to_string(),
        )
}

/// Go's limit on a counted repetition (`regexp/syntax`'s maxRepeat).
const MAX_REPEAT: u32 = 1000;

/// `pattern` as the `regex` crate should read it to mean what Go's `regexp` reads, or Go's
/// refusal.
fn as_go_reads(pattern: &str) -> Result<String, RegexError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 4);
    // The previous token was a repetition (and whether `?` already made it lazy).
    let (mut repeated, mut lazy) = (false, false);
    // A flags group (`(?i)`) is no operand: written after the repetitions that follow it.
    let mut pending_flags = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(end) = flags_group_end(&chars, i) {
            pending_flags.extend(&chars[i..end]);
            i = end;
            continue;
        }
        let token_end = match c {
            '\\' => escape_end(&chars, i),
            '[' => class_end(&chars, i),
            _ => i + 1,
        };
        let repeat = match c {
            '*' | '+' | '?' => Some(i + 1),
            '{' => counted_repeat(&chars, i)?,
            _ => None,
        };
        match repeat {
            Some(end) if c == '?' && repeated && !lazy => {
                lazy = true;
                out.push('?');
                i = end;
            }
            Some(end) => {
                if repeated {
                    let operator: String = chars[i..end].iter().collect();
                    return Err(RegexError(format!(
                        "invalid nested repetition operator: `{operator}`"
                    )));
                }
                out.extend(&chars[i..end]);
                (repeated, lazy) = (true, false);
                i = end;
            }
            None => {
                out.push_str(&std::mem::take(&mut pending_flags));
                match c {
                    '{' => out.push_str("\\{"),
                    '[' => push_class(&mut out, &chars[i..token_end]),
                    _ => out.extend(&chars[i..token_end]),
                }
                (repeated, lazy) = (false, false);
                i = token_end;
            }
        }
    }
    out.push_str(&pending_flags);
    Ok(out)
}

/// Where a flags-only group (`(?i)`, `(?-s)`, not `(?i:…)`) starting at `i` ends.
fn flags_group_end(chars: &[char], i: usize) -> Option<usize> {
    if chars.get(i) != Some(&'(') || chars.get(i + 1) != Some(&'?') {
        return None;
    }
    let mut j = i + 2;
    while let Some(&c) = chars.get(j) {
        match c {
            ')' if j > i + 2 => return Some(j + 1),
            'i' | 'm' | 's' | 'U' | '-' => j += 1,
            _ => return None,
        }
    }
    None
}

/// A class as Go reads it: `[` (but `[:name:]`) and doubled `&`, `-`, `~` are literals.
fn push_class(out: &mut String, class: &[char]) {
    let mut j = 0;
    while j < class.len() {
        let c = class[j];
        match c {
            '\\' => {
                let end = escape_end(class, j);
                out.extend(&class[j..end]);
                j = end;
                continue;
            }
            '[' if j > 0 && class.get(j + 1) == Some(&':') => {
                let end = class[j + 2..]
                    .windows(2)
                    .position(|w| w == [':', ']'])
                    .map_or(j + 1, |offset| j + 2 + offset + 2);
                out.extend(&class[j..end]);
                j = end;
                continue;
            }
            '[' if j > 0 => out.push_str("\\["),
            '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '-' if class.get(j + 1) == Some(&'-') => out.push_str("-\\"),
            _ => out.push(c),
        }
        j += 1;
    }
}

/// Where the escape at `i` ends: `\\p{Greek}`, `\\x{41}` run to their `}`.
fn escape_end(chars: &[char], i: usize) -> usize {
    match chars.get(i + 1) {
        Some('p' | 'P' | 'x') if chars.get(i + 2) == Some(&'{') => chars[i..]
            .iter()
            .position(|&c| c == '}')
            .map_or(chars.len(), |offset| i + offset + 1),
        Some(_) => i + 2,
        None => i + 1,
    }
}

/// Where the character class opening at `i` ends (a `]` first in it is a literal; escapes and
/// `[:name:]` are skipped whole). An unclosed class is left to the regex crate to refuse.
fn class_end(chars: &[char], i: usize) -> usize {
    let mut j = i + 1;
    if chars.get(j) == Some(&'^') {
        j += 1;
    }
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    while j < chars.len() {
        match chars[j] {
            ']' => return j + 1,
            '\\' => j = escape_end(chars, j),
            '[' if chars.get(j + 1) == Some(&':') => {
                j = chars[j + 2..]
                    .windows(2)
                    .position(|w| w == [':', ']'])
                    .map_or(j + 1, |offset| j + 2 + offset + 2);
            }
            _ => j += 1,
        }
    }
    chars.len()
}

/// `{n}`, `{n,}` or `{n,m}` at `i`: where it ends, Go's refusal of a count over 1000, or `None`
/// when the `{` starts no repetition (and is a literal).
fn counted_repeat(chars: &[char], i: usize) -> Result<Option<usize>, RegexError> {
    let Some(close) = chars[i..]
        .iter()
        .position(|&c| c == '}')
        .map(|offset| i + offset)
    else {
        return Ok(None);
    };
    let body: String = chars[i + 1..close].iter().collect();
    let (low, high) = match body.split_once(',') {
        Some((low, high)) => (low, Some(high)),
        None => (body.as_str(), None),
    };
    let number = |text: &str| -> Option<u32> {
        (!text.is_empty() && text.chars().all(|c| c.is_ascii_digit()))
            .then(|| text.parse().unwrap_or(u32::MAX))
    };
    let Some(low) = number(low) else {
        return Ok(None);
    };
    let high = match high {
        None => Some(low),
        Some("") => None,
        Some(text) => match number(text) {
            Some(high) => Some(high),
            None => return Ok(None),
        },
    };
    if low > MAX_REPEAT || high.is_some_and(|high| high > MAX_REPEAT || high < low) {
        let written: String = chars[i..=close].iter().collect();
        return Err(RegexError(format!("invalid repeat count: `{written}`")));
    }
    Ok(Some(close + 1))
}

#[cfg(test)]
#[path = "../unit_tests/argocd_regex_tests.rs"]
mod tests;
