//! Argo CD's `regex` match mode: casbin's `util.RegexMatch(key1, key2)`, which is Go's
//! `regexp.MatchString(pattern, text)`: RE2 syntax, unanchored (`applications` also matches
//! `myapplications`; anchor with `^…$`). An invalid pattern makes casbin panic, which it turns
//! into an error, so the whole enforcement that reaches the pattern answers "denied".
//!
//! This is a small RE2 implementation (a Pike VM: linear time, no backtracking) written for the
//! patterns RBAC policies use, since the crate has no regex dependency. It follows Go's
//! `regexp/syntax` parser for what it accepts and refuses, with these exceptions, each refused
//! with an error saying so: Unicode classes (`\pL`, `\p{Greek}`). Case folding under `(?i)` uses
//! Unicode simple case mapping (Go uses the full fold orbits; they differ for a few letters).

/// A pattern Go's `regexp` refuses (or this implementation does not support).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error parsing regexp: {0}")]
pub struct RegexError(pub String);

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex {
    program: Vec<Inst>,
}

/// Go's limit on a counted repetition, `{n,m}` (and their nesting).
const MAX_REPEAT: u32 = 1000;
/// Instructions a compiled pattern may have; Go refuses very large programs too.
const MAX_PROGRAM: usize = 100_000;

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    fold: bool,
    multi_line: bool,
    dot_nl: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    BeginText,
    EndText,
    BeginLine,
    EndLine,
    WordBoundary,
    NotWordBoundary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    ranges: Vec<(char, char)>,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    items: Vec<Group>,
    negated: bool,
    fold: bool,
}

#[derive(Debug, Clone)]
enum Ast {
    Empty,
    Char(char, bool),
    Any {
        nl: bool,
    },
    Class(Class),
    Look(Look),
    Concat(Vec<Ast>),
    Alternate(Vec<Ast>),
    Repeat {
        sub: Box<Ast>,
        min: u32,
        max: Option<u32>,
        counted: bool,
    },
}

#[derive(Debug, Clone)]
enum Inst {
    Char(char, bool),
    Any { nl: bool },
    Class(Class),
    Look(Look),
    Split(usize, usize),
    Jump(usize),
    Match,
}

impl Regex {
    pub fn new(pattern: &str) -> Result<Self, RegexError> {
        let mut parser = Parser {
            chars: pattern.chars().collect(),
            pos: 0,
            whole: pattern,
        };
        let ast = parser.parse_alternation(Flags::default(), 0)?;
        if parser.pos < parser.chars.len() {
            // Only a `)` stops the top level early.
            return Err(RegexError(format!("unexpected ): `{pattern}`")));
        }
        let mut program = Vec::new();
        compile(&ast, &mut program)?;
        program.push(Inst::Match);
        Ok(Regex { program })
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut current = Threads::new(self.program.len());
        let mut next = Threads::new(self.program.len());
        for at in 0..=chars.len() {
            // Unanchored: a new thread starts at every position.
            if self.add(&mut current, 0, at, &chars) {
                return true;
            }
            let Some(&c) = chars.get(at) else { break };
            next.clear();
            for index in 0..current.list.len() {
                let pc = current.list[index];
                let step = match &self.program[pc] {
                    Inst::Char(want, fold) => chars_equal(*want, c, *fold),
                    Inst::Any { nl } => *nl || c != '\n',
                    Inst::Class(class) => class.matches(c),
                    _ => false,
                };
                if step && self.add(&mut next, pc + 1, at + 1, &chars) {
                    return true;
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        false
    }

    /// Add the thread at `pc` and everything reachable without consuming; true on a match.
    fn add(&self, threads: &mut Threads, pc: usize, at: usize, text: &[char]) -> bool {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if !threads.insert(pc) {
                continue;
            }
            match &self.program[pc] {
                Inst::Match => return true,
                Inst::Jump(to) => stack.push(*to),
                Inst::Split(first, second) => {
                    stack.push(*second);
                    stack.push(*first);
                }
                Inst::Look(look) => {
                    if look_holds(*look, text, at) {
                        stack.push(pc + 1);
                    }
                }
                Inst::Char(..) | Inst::Any { .. } | Inst::Class(_) => threads.list.push(pc),
            }
        }
        false
    }
}

/// A sparse set of program counters, with the consuming ones listed in order.
struct Threads {
    seen: Vec<bool>,
    touched: Vec<usize>,
    list: Vec<usize>,
}

impl Threads {
    fn new(size: usize) -> Self {
        Threads {
            seen: vec![false; size],
            touched: Vec::new(),
            list: Vec::new(),
        }
    }

    fn insert(&mut self, pc: usize) -> bool {
        if self.seen[pc] {
            return false;
        }
        self.seen[pc] = true;
        self.touched.push(pc);
        true
    }

    fn clear(&mut self) {
        for pc in self.touched.drain(..) {
            self.seen[pc] = false;
        }
        self.list.clear();
    }
}

fn is_word(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
}

fn look_holds(look: Look, text: &[char], at: usize) -> bool {
    let before = at.checked_sub(1).and_then(|i| text.get(i));
    let after = text.get(at);
    match look {
        Look::BeginText => at == 0,
        Look::EndText => at == text.len(),
        Look::BeginLine => at == 0 || before == Some(&'\n'),
        Look::EndLine => at == text.len() || after == Some(&'\n'),
        Look::WordBoundary => is_word(before) != is_word(after),
        Look::NotWordBoundary => is_word(before) == is_word(after),
    }
}

/// `c` and the characters it folds to under `(?i)` (simple case mapping, applied twice so that
/// e.g. `µ`, `Μ` and `μ` meet).
fn fold_orbit(c: char) -> Vec<char> {
    let mut orbit = vec![c];
    for _ in 0..2 {
        for known in orbit.clone() {
            let mut lower = known.to_lowercase();
            let mut upper = known.to_uppercase();
            for mapped in [
                lower.next().filter(|_| lower.next().is_none()),
                upper.next().filter(|_| upper.next().is_none()),
            ]
            .into_iter()
            .flatten()
            {
                if !orbit.contains(&mapped) {
                    orbit.push(mapped);
                }
            }
        }
    }
    // Go folds these with `k` and `s` too.
    for (ascii, other) in [('k', '\u{212A}'), ('s', '\u{17F}')] {
        if orbit.contains(&ascii) && !orbit.contains(&other) {
            orbit.push(other);
        }
        if orbit.contains(&other) {
            for variant in [ascii, ascii.to_ascii_uppercase()] {
                if !orbit.contains(&variant) {
                    orbit.push(variant);
                }
            }
        }
    }
    orbit
}

fn chars_equal(want: char, c: char, fold: bool) -> bool {
    want == c || (fold && fold_orbit(c).contains(&want))
}

impl Group {
    fn contains(&self, c: char, fold: bool) -> bool {
        let inside = |c: char| self.ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
        let found = if fold {
            fold_orbit(c).into_iter().any(inside)
        } else {
            inside(c)
        };
        found != self.negated
    }
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.items.iter().any(|group| group.contains(c, self.fold)) != self.negated
    }
}

fn group(ranges: &[(char, char)], negated: bool) -> Group {
    Group {
        ranges: ranges.to_vec(),
        negated,
    }
}

/// `\d`, `\s`, `\w` and their negations (ASCII, as in Go).
fn perl_group(letter: char) -> Option<Group> {
    let ranges: &[(char, char)] = match letter.to_ascii_lowercase() {
        'd' => &[('0', '9')],
        's' => &[('\t', '\n'), ('\x0C', '\r'), (' ', ' ')],
        'w' => &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
        _ => return None,
    };
    Some(group(ranges, letter.is_ascii_uppercase()))
}

/// `[:alpha:]` and the other POSIX classes Go knows, `[:^alpha:]` negated.
fn posix_group(name: &str) -> Option<Group> {
    let (negated, name) = match name.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let ranges: &[(char, char)] = match name {
        "alnum" => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
        "alpha" => &[('A', 'Z'), ('a', 'z')],
        "ascii" => &[('\0', '\x7F')],
        "blank" => &[('\t', '\t'), (' ', ' ')],
        "cntrl" => &[('\0', '\x1F'), ('\x7F', '\x7F')],
        "digit" => &[('0', '9')],
        "graph" => &[('!', '~')],
        "lower" => &[('a', 'z')],
        "print" => &[(' ', '~')],
        "punct" => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
        "space" => &[('\t', '\r'), (' ', ' ')],
        "upper" => &[('A', 'Z')],
        "word" => &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
        "xdigit" => &[('0', '9'), ('A', 'F'), ('a', 'f')],
        _ => return None,
    };
    Some(group(ranges, negated))
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    whole: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn text(&self, from: usize, to: usize) -> String {
        self.chars[from..to.min(self.chars.len())].iter().collect()
    }

    /// Alternatives up to a `)` (left unconsumed) or the end.
    fn parse_alternation(&mut self, flags: Flags, depth: usize) -> Result<Ast, RegexError> {
        if depth > 1000 {
            return Err(RegexError(format!(
                "expression nests too deeply: `{}`",
                self.whole
            )));
        }
        let mut flags = flags;
        let mut alternatives = vec![self.parse_concat(&mut flags, depth)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alternatives.push(self.parse_concat(&mut flags, depth)?);
        }
        Ok(if alternatives.len() == 1 {
            alternatives.remove(0)
        } else {
            Ast::Alternate(alternatives)
        })
    }

    /// One alternative. `(?i)` changes the flags until the end of the enclosing group, so they
    /// carry over `|`.
    fn parse_concat(&mut self, flags: &mut Flags, depth: usize) -> Result<Ast, RegexError> {
        let mut items: Vec<Ast> = Vec::new();
        // The previous token's text when it was a repetition operator: Go refuses `a**`.
        let mut last_repeat: Option<usize> = None;
        while let Some(c) = self.peek() {
            let start = self.pos;
            let mut repeat = None;
            match c {
                '|' | ')' => break,
                '(' => {
                    if self.peek_at(1) == Some('?') {
                        match self.parse_group_flags(flags)? {
                            GroupStart::FlagsOnly => {}
                            GroupStart::Group(inner) => {
                                let sub = self.parse_group_body(inner, depth)?;
                                items.push(sub);
                            }
                        }
                    } else {
                        self.pos += 1;
                        let sub = self.parse_group_body(*flags, depth)?;
                        items.push(sub);
                    }
                }
                '*' | '+' | '?' => {
                    self.pos += 1;
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.apply_repeat(&mut items, start, min, max, false, last_repeat)?;
                    repeat = Some(start);
                }
                '{' => match self.parse_repeat_counts() {
                    None => {
                        self.pos += 1;
                        items.push(Ast::Char('{', flags.fold));
                    }
                    Some((min, max)) => {
                        let too_big = |n: i64| n < 0 || n > i64::from(MAX_REPEAT);
                        if too_big(min)
                            || max.is_some_and(too_big)
                            || max.is_some_and(|max| min > max)
                        {
                            return Err(RegexError(format!(
                                "invalid repeat count: `{}`",
                                self.text(start, self.pos)
                            )));
                        }
                        let min = u32::try_from(min).unwrap_or(MAX_REPEAT);
                        let max = max.map(|max| u32::try_from(max).unwrap_or(MAX_REPEAT));
                        self.apply_repeat(&mut items, start, min, max, true, last_repeat)?;
                        repeat = Some(start);
                    }
                },
                '^' => {
                    self.pos += 1;
                    items.push(Ast::Look(if flags.multi_line {
                        Look::BeginLine
                    } else {
                        Look::BeginText
                    }));
                }
                '$' => {
                    self.pos += 1;
                    items.push(Ast::Look(if flags.multi_line {
                        Look::EndLine
                    } else {
                        Look::EndText
                    }));
                }
                '.' => {
                    self.pos += 1;
                    items.push(Ast::Any { nl: flags.dot_nl });
                }
                '[' => {
                    let class = self.parse_class(*flags)?;
                    items.push(Ast::Class(class));
                }
                '\\' => self.parse_escape_item(*flags, &mut items)?,
                _ => {
                    self.pos += 1;
                    items.push(Ast::Char(c, flags.fold));
                }
            }
            last_repeat = repeat;
        }
        Ok(match items.len() {
            0 => Ast::Empty,
            1 => items.remove(0),
            _ => Ast::Concat(items),
        })
    }

    fn parse_group_body(&mut self, flags: Flags, depth: usize) -> Result<Ast, RegexError> {
        let sub = self.parse_alternation(flags, depth + 1)?;
        if self.peek() != Some(')') {
            return Err(RegexError(format!("missing closing ): `{}`", self.whole)));
        }
        self.pos += 1;
        Ok(sub)
    }

    fn apply_repeat(
        &mut self,
        items: &mut Vec<Ast>,
        start: usize,
        min: u32,
        max: Option<u32>,
        counted: bool,
        last_repeat: Option<usize>,
    ) -> Result<(), RegexError> {
        // A trailing `?` makes it non-greedy: the same language.
        if self.peek() == Some('?') {
            self.pos += 1;
        }
        if let Some(previous) = last_repeat {
            return Err(RegexError(format!(
                "invalid nested repetition operator: `{}`",
                self.text(previous, self.pos)
            )));
        }
        let Some(sub) = items.pop() else {
            return Err(RegexError(format!(
                "missing argument to repetition operator: `{}`",
                self.text(start, self.pos)
            )));
        };
        let repeat = Ast::Repeat {
            sub: Box::new(sub),
            min,
            max,
            counted,
        };
        if counted && (min >= 2 || max.is_some_and(|max| max >= 2)) && !repeat_valid(&repeat, 1000)
        {
            return Err(RegexError(format!(
                "invalid repeat count: `{}`",
                self.text(start, self.pos)
            )));
        }
        items.push(repeat);
        Ok(())
    }

    /// `{n}`, `{n,}` or `{n,m}` at the cursor (consumed), as Go's `parseRepeat`: `None` when it
    /// is not of that form (then `{` is a literal); a count too big to read is -1.
    fn parse_repeat_counts(&mut self) -> Option<(i64, Option<i64>)> {
        let mut at = self.pos + 1;
        let min = self.parse_int(&mut at)?;
        let max = match self.chars.get(at) {
            Some(',') => {
                at += 1;
                if self.chars.get(at) == Some(&'}') {
                    None
                } else {
                    Some(self.parse_int(&mut at)?)
                }
            }
            Some(_) => Some(min),
            None => return None,
        };
        if self.chars.get(at) != Some(&'}') {
            return None;
        }
        self.pos = at + 1;
        // Go marks an unreadable max by making min invalid.
        let min = if max.is_some_and(|max| max < 0) {
            -1
        } else {
            min
        };
        Some((min, max))
    }

    fn parse_int(&self, at: &mut usize) -> Option<i64> {
        let start = *at;
        while self.chars.get(*at).is_some_and(char::is_ascii_digit) {
            *at += 1;
        }
        if *at == start {
            return None;
        }
        // Go disallows leading zeros.
        if *at - start >= 2 && self.chars[start] == '0' {
            return None;
        }
        let mut value: i64 = 0;
        for c in &self.chars[start..*at] {
            if value >= 100_000_000 {
                return Some(-1);
            }
            value = value * 10 + i64::from(c.to_digit(10).unwrap_or(0));
        }
        Some(value)
    }

    /// `(?flags)`, `(?flags:`, `(?P<name>` or `(?<name>` at the cursor (consumed).
    fn parse_group_flags(&mut self, flags: &mut Flags) -> Result<GroupStart, RegexError> {
        let start = self.pos;
        let named = match (self.peek_at(2), self.peek_at(3)) {
            (Some('P'), Some('<')) => Some(4),
            (Some('<'), _) => Some(3),
            _ => None,
        };
        if let Some(name_start) = named {
            let Some(end) = self.chars[self.pos..].iter().position(|c| *c == '>') else {
                return Err(RegexError(format!(
                    "invalid named capture: `{}`",
                    self.text(start, self.chars.len())
                )));
            };
            let name = &self.chars[self.pos + name_start..self.pos + end];
            if name.is_empty() || !name.iter().all(|c| c.is_ascii_alphanumeric() || *c == '_') {
                return Err(RegexError(format!(
                    "invalid named capture: `{}`",
                    self.text(start, self.pos + end + 1)
                )));
            }
            self.pos += end + 1;
            return Ok(GroupStart::Group(*flags));
        }
        self.pos += 2;
        let mut new = *flags;
        let mut negate = false;
        let mut saw_flag = false;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                'i' => new.fold = !negate,
                'm' => new.multi_line = !negate,
                's' => new.dot_nl = !negate,
                // Non-greedy by default: the same language.
                'U' => {}
                '-' if !negate => {
                    negate = true;
                    saw_flag = false;
                    continue;
                }
                ':' | ')' if !negate || saw_flag => {
                    if c == ':' {
                        return Ok(GroupStart::Group(new));
                    }
                    *flags = new;
                    return Ok(GroupStart::FlagsOnly);
                }
                _ => break,
            }
            saw_flag = true;
        }
        Err(RegexError(format!(
            "invalid or unsupported Perl syntax: `{}`",
            self.text(start, self.pos)
        )))
    }

    /// A `\` item outside a class, pushed onto `items` (`\Q…\E` pushes one per character, so
    /// that a repetition after it applies to the last one, as in Go).
    fn parse_escape_item(&mut self, flags: Flags, items: &mut Vec<Ast>) -> Result<(), RegexError> {
        let look = match self.peek_at(1) {
            Some('A') => Some(Look::BeginText),
            Some('z') => Some(Look::EndText),
            Some('b') => Some(Look::WordBoundary),
            Some('B') => Some(Look::NotWordBoundary),
            Some('C') => {
                return Err(RegexError("invalid escape sequence: `\\C`".into()));
            }
            Some('Q') => {
                self.pos += 2;
                while let Some(c) = self.peek() {
                    if c == '\\' && self.peek_at(1) == Some('E') {
                        self.pos += 2;
                        break;
                    }
                    items.push(Ast::Char(c, flags.fold));
                    self.pos += 1;
                }
                return Ok(());
            }
            _ => None,
        };
        if let Some(look) = look {
            self.pos += 2;
            items.push(Ast::Look(look));
            return Ok(());
        }
        if let Some(letter @ ('p' | 'P')) = self.peek_at(1) {
            return Err(RegexError(format!(
                "Unicode class `\\{letter}…` is not supported by guardrails"
            )));
        }
        if let Some(group) = self.peek_at(1).and_then(perl_group) {
            self.pos += 2;
            items.push(Ast::Class(Class {
                items: vec![group],
                negated: false,
                fold: flags.fold,
            }));
            return Ok(());
        }
        let c = self.parse_escape()?;
        items.push(Ast::Char(c, flags.fold));
        Ok(())
    }

    /// A single-character escape at the cursor, as Go's `parseEscape`.
    fn parse_escape(&mut self) -> Result<char, RegexError> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(RegexError(
                "trailing backslash at end of expression: ``".into(),
            ));
        };
        self.pos += 1;
        let invalid = |parser: &Self| {
            RegexError(format!(
                "invalid escape sequence: `{}`",
                parser.text(start, parser.pos)
            ))
        };
        match c {
            '1'..='7' if !self.peek().is_some_and(|d| ('0'..='7').contains(&d)) => {
                Err(invalid(self))
            }
            '0'..='7' => {
                let mut value = c.to_digit(8).unwrap_or(0);
                for _ in 1..3 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(digit) => {
                            value = value * 8 + digit;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                char::from_u32(value).ok_or_else(|| invalid(self))
            }
            'x' => {
                let Some(first) = self.peek() else {
                    return Err(invalid(self));
                };
                self.pos += 1;
                if first == '{' {
                    let mut value: u32 = 0;
                    let mut digits = 0;
                    loop {
                        let Some(d) = self.peek() else {
                            return Err(invalid(self));
                        };
                        self.pos += 1;
                        if d == '}' {
                            break;
                        }
                        let Some(digit) = d.to_digit(16) else {
                            return Err(invalid(self));
                        };
                        value = value * 16 + digit;
                        if value > 0x10FFFF {
                            return Err(invalid(self));
                        }
                        digits += 1;
                    }
                    if digits == 0 {
                        return Err(invalid(self));
                    }
                    return char::from_u32(value).ok_or_else(|| invalid(self));
                }
                let Some(second) = self.peek() else {
                    return Err(invalid(self));
                };
                self.pos += 1;
                match (first.to_digit(16), second.to_digit(16)) {
                    (Some(high), Some(low)) => {
                        char::from_u32(high * 16 + low).ok_or_else(|| invalid(self))
                    }
                    _ => Err(invalid(self)),
                }
            }
            'a' => Ok('\x07'),
            'f' => Ok('\x0C'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\x0B'),
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c),
            _ => Err(invalid(self)),
        }
    }

    /// A `[…]` class at the cursor, as Go's `parseClass`.
    fn parse_class(&mut self, flags: Flags) -> Result<Class, RegexError> {
        let start = self.pos;
        self.pos += 1;
        let missing = |parser: &Self| {
            RegexError(format!(
                "missing closing ]: `{}`",
                parser.text(start, parser.chars.len())
            ))
        };
        let mut negated = false;
        if self.peek() == Some('^') {
            negated = true;
            self.pos += 1;
        }
        let mut items: Vec<Group> = Vec::new();
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err(missing(self)),
                Some(']') if !first => break,
                _ => {}
            }
            first = false;
            if self.peek() == Some('[') && self.peek_at(1) == Some(':') {
                let rest: String = self.chars[self.pos + 2..].iter().collect();
                if let Some(end) = rest.find(":]") {
                    let name = &rest[..end];
                    let Some(group) = posix_group(name) else {
                        return Err(RegexError(format!(
                            "invalid character class range: `[:{name}:]`"
                        )));
                    };
                    items.push(group);
                    self.pos += 2 + name.chars().count() + 2;
                    continue;
                }
            }
            if self.peek() == Some('\\') {
                if let Some(letter @ ('p' | 'P')) = self.peek_at(1) {
                    return Err(RegexError(format!(
                        "Unicode class `\\{letter}…` is not supported by guardrails"
                    )));
                }
                if let Some(group) = self.peek_at(1).and_then(perl_group) {
                    items.push(group);
                    self.pos += 2;
                    continue;
                }
            }
            let range_start = self.pos;
            let lo = self.class_char().ok_or_else(|| missing(self))??;
            let mut hi = lo;
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.pos += 1;
                hi = self.class_char().ok_or_else(|| missing(self))??;
                if hi < lo {
                    return Err(RegexError(format!(
                        "invalid character class range: `{}`",
                        self.text(range_start, self.pos)
                    )));
                }
            }
            items.push(group(&[(lo, hi)], false));
        }
        self.pos += 1;
        Ok(Class {
            items,
            negated,
            fold: flags.fold,
        })
    }

    fn class_char(&mut self) -> Option<Result<char, RegexError>> {
        let c = self.peek()?;
        if c == '\\' {
            return Some(self.parse_escape());
        }
        self.pos += 1;
        Some(Ok(c))
    }
}

enum GroupStart {
    FlagsOnly,
    Group(Flags),
}

/// Go's `repeatIsValid`: nested counted repetitions may not exceed `n` copies.
fn repeat_valid(ast: &Ast, n: u32) -> bool {
    let mut n = n;
    match ast {
        Ast::Repeat {
            sub,
            min,
            max,
            counted,
        } => {
            if *counted {
                // The largest count: max, or min when unbounded.
                let m = max.unwrap_or(*min);
                if max == &Some(0) {
                    return true;
                }
                if m > n {
                    return false;
                }
                n = n.checked_div(m).unwrap_or(n);
            }
            repeat_valid(sub, n)
        }
        Ast::Concat(items) | Ast::Alternate(items) => items.iter().all(|i| repeat_valid(i, n)),
        _ => true,
    }
}

fn compile(ast: &Ast, program: &mut Vec<Inst>) -> Result<(), RegexError> {
    if program.len() > MAX_PROGRAM {
        return Err(RegexError("expression too large".into()));
    }
    match ast {
        Ast::Empty => {}
        Ast::Char(c, fold) => program.push(Inst::Char(*c, *fold)),
        Ast::Any { nl } => program.push(Inst::Any { nl: *nl }),
        Ast::Class(class) => program.push(Inst::Class(class.clone())),
        Ast::Look(look) => program.push(Inst::Look(*look)),
        Ast::Concat(items) => {
            for item in items {
                compile(item, program)?;
            }
        }
        Ast::Alternate(options) => {
            let mut jumps = Vec::new();
            for (index, option) in options.iter().enumerate() {
                if index + 1 < options.len() {
                    let split = program.len();
                    program.push(Inst::Split(split + 1, 0));
                    compile(option, program)?;
                    jumps.push(program.len());
                    program.push(Inst::Jump(0));
                    let next = program.len();
                    program[split] = Inst::Split(split + 1, next);
                } else {
                    compile(option, program)?;
                }
            }
            let end = program.len();
            for jump in jumps {
                program[jump] = Inst::Jump(end);
            }
        }
        Ast::Repeat { sub, min, max, .. } => {
            for _ in 0..*min {
                compile(sub, program)?;
            }
            match max {
                None => {
                    let split = program.len();
                    program.push(Inst::Split(split + 1, 0));
                    compile(sub, program)?;
                    program.push(Inst::Jump(split));
                    let end = program.len();
                    program[split] = Inst::Split(split + 1, end);
                }
                Some(max) => {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(program.len());
                        program.push(Inst::Split(0, 0));
                        compile(sub, program)?;
                    }
                    let end = program.len();
                    for split in splits {
                        program[split] = Inst::Split(split + 1, end);
                    }
                }
            }
        }
    }
    if program.len() > MAX_PROGRAM {
        return Err(RegexError("expression too large".into()));
    }
    Ok(())
}

#[cfg(test)]
#[path = "../unit_tests/argocd_regex_tests.rs"]
mod tests;
