//! Argo CD's `glob` match mode: the pattern syntax of `github.com/gobwas/glob` v1.0.0 (the version
//! argo-cd v3.6.2's go.mod pins), called as `util/glob.Match(pattern, text)` with no separators.
//! Without separators `*` and `**` are the same and cross `/`: `proj/*` matches `proj/ns/app`.
//!
//! The lexer is a line-for-line port of gobwas/glob's `syntax/lexer.go` and the parser of its
//! `parse.go`, so the same patterns are refused (Argo CD then treats them as matching nothing).
//! Matching follows the documented semantics (gobwas v1 fuzzes its matcher against `regexp`)
//! rather than its backtracking engine: the set of positions each part can end at.

use std::collections::{BTreeSet, VecDeque};

/// A pattern gobwas/glob refuses; Argo CD logs it and the pattern matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("glob: syntax error at {offset}: {reason}")]
pub struct GlobError {
    /// Byte offset in the pattern where the error was detected.
    pub offset: usize,
    pub reason: String,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    root: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(Vec<char>),
    /// `*` or `**`: identical without separators.
    Star,
    /// `?`.
    Single,
    Set {
        chars: BTreeSet<char>,
        not: bool,
    },
    Range {
        lo: char,
        hi: char,
        not: bool,
    },
    Sequence(Vec<Node>),
    Alternatives(Vec<Node>),
}

impl Glob {
    pub fn compile(pattern: &str) -> Result<Self, GlobError> {
        parse(pattern).map(|root| Glob { root })
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut start = vec![false; chars.len() + 1];
        start[0] = true;
        let end = advance(&self.root, &chars, &start);
        end[chars.len()]
    }
}

/// The positions `node` can end at, starting from any of the positions set in `from`.
fn advance(node: &Node, text: &[char], from: &[bool]) -> Vec<bool> {
    let mut to = vec![false; from.len()];
    match node {
        Node::Text(literal) => {
            for (at, _) in from.iter().enumerate().filter(|(_, set)| **set) {
                if text[at..].starts_with(literal) {
                    to[at + literal.len()] = true;
                }
            }
        }
        Node::Star => {
            if let Some(first) = from.iter().position(|set| *set) {
                to[first..].iter_mut().for_each(|slot| *slot = true);
            }
        }
        Node::Single | Node::Set { .. } | Node::Range { .. } => {
            for (at, _) in from.iter().enumerate().filter(|(_, set)| **set) {
                if let Some(c) = text.get(at)
                    && one_char(node, *c)
                {
                    to[at + 1] = true;
                }
            }
        }
        Node::Sequence(parts) => {
            let mut current = from.to_vec();
            for part in parts {
                current = advance(part, text, &current);
            }
            to = current;
        }
        Node::Alternatives(options) => {
            for option in options {
                for (slot, reached) in to.iter_mut().zip(advance(option, text, from)) {
                    *slot |= reached;
                }
            }
        }
    }
    to
}

fn one_char(node: &Node, c: char) -> bool {
    match node {
        Node::Single => true,
        Node::Set { chars, not } => chars.contains(&c) != *not,
        Node::Range { lo, hi, not } => (*lo <= c && c <= *hi) != *not,
        _ => false,
    }
}

// ---- lexer: gobwas/glob v1.0.0 syntax/lexer.go ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Eof,
    Error(String),
    Text(String),
    Any,
    Super,
    Single,
    Not,
    TermSeparator,
    RangeOpen,
    RangeClose,
    RangeLo(char),
    RangeHi(char),
    RangeBetween,
    TermsOpen,
    TermsClose,
}

const TEXT_BREAKERS: &[char] = &['?', '*', '[', '{'];
const TERMS_BREAKERS: &[char] = &['?', '*', '[', '{', '}', ','];

struct Lexer<'a> {
    data: &'a str,
    pos: usize,
    err: Option<String>,
    tokens: VecDeque<Token>,
    terms_level: usize,
    /// `None` is gobwas' `eof` sentinel.
    last_rune: Option<char>,
    last_rune_size: usize,
    has_rune: bool,
}

impl<'a> Lexer<'a> {
    fn new(data: &'a str) -> Self {
        Lexer {
            data,
            pos: 0,
            err: None,
            tokens: VecDeque::new(),
            terms_level: 0,
            last_rune: None,
            last_rune_size: 0,
            has_rune: false,
        }
    }

    fn next(&mut self) -> Token {
        loop {
            if let Some(err) = &self.err {
                return Token::Error(err.clone());
            }
            if let Some(token) = self.tokens.pop_front() {
                return token;
            }
            self.fetch_item();
        }
    }

    fn peek(&self) -> (Option<char>, usize) {
        match self
            .data
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            Some(c) => (Some(c), c.len_utf8()),
            None => (None, 0),
        }
    }

    fn read(&mut self) -> Option<char> {
        if self.has_rune {
            self.has_rune = false;
            self.pos += self.last_rune_size;
            return self.last_rune;
        }
        let (rune, size) = self.peek();
        self.pos += size;
        self.last_rune = rune;
        self.last_rune_size = size;
        rune
    }

    fn unread(&mut self) {
        if self.has_rune {
            self.err = Some("could not unread rune".into());
            return;
        }
        self.pos -= self.last_rune_size;
        self.has_rune = true;
    }

    fn fetch_item(&mut self) {
        let rune = self.read();
        match rune {
            None => self.tokens.push_back(Token::Eof),
            Some('{') => {
                self.terms_level += 1;
                self.tokens.push_back(Token::TermsOpen);
            }
            Some(',') if self.terms_level > 0 => self.tokens.push_back(Token::TermSeparator),
            Some('}') if self.terms_level > 0 => {
                self.tokens.push_back(Token::TermsClose);
                self.terms_level -= 1;
            }
            Some('[') => {
                self.tokens.push_back(Token::RangeOpen);
                self.fetch_range();
            }
            Some('?') => self.tokens.push_back(Token::Single),
            Some('*') => {
                if self.read() == Some('*') {
                    self.tokens.push_back(Token::Super);
                } else {
                    self.unread();
                    self.tokens.push_back(Token::Any);
                }
            }
            Some(_) => {
                self.unread();
                let breakers = if self.terms_level > 0 {
                    TERMS_BREAKERS
                } else {
                    TEXT_BREAKERS
                };
                self.fetch_text(breakers);
            }
        }
    }

    fn fetch_range(&mut self) {
        let mut want_hi = false;
        let mut want_close = false;
        let mut seen_not = false;
        loop {
            let Some(rune) = self.read() else {
                self.err = Some("unexpected end of input".into());
                return;
            };
            if want_close {
                if rune == ']' {
                    self.tokens.push_back(Token::RangeClose);
                } else {
                    self.err = Some("expected close range character".into());
                }
                return;
            }
            if want_hi {
                self.tokens.push_back(Token::RangeHi(rune));
                want_close = true;
                continue;
            }
            if !seen_not && rune == '!' {
                self.tokens.push_back(Token::Not);
                seen_not = true;
                continue;
            }
            let (next, width) = self.peek();
            if next == Some('-') {
                self.pos += width;
                self.tokens.push_back(Token::RangeLo(rune));
                self.tokens.push_back(Token::RangeBetween);
                want_hi = true;
                continue;
            }
            self.unread();
            self.fetch_text(&[']']);
            want_close = true;
        }
    }

    fn fetch_text(&mut self, breakers: &[char]) {
        let mut data = String::new();
        let mut escaped = false;
        loop {
            let Some(rune) = self.read() else {
                if escaped {
                    self.err = Some("trailing backslash".into());
                }
                break;
            };
            if !escaped {
                if rune == '\\' {
                    escaped = true;
                    continue;
                }
                if breakers.contains(&rune) {
                    self.unread();
                    break;
                }
            }
            escaped = false;
            data.push(rune);
        }
        if !data.is_empty() {
            self.tokens.push_back(Token::Text(data));
        }
    }
}

// ---- parser: gobwas/glob v1.0.0 parse.go (compile, parseRange) ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operator {
    Terms(usize),
    List(usize),
}

fn parse(pattern: &str) -> Result<Node, GlobError> {
    let mut lexer = Lexer::new(pattern);
    let mut stack: Vec<Node> = Vec::new();
    let mut operators: Vec<Operator> = Vec::new();
    let error = |lexer: &Lexer, reason: String| GlobError {
        offset: lexer.pos,
        reason,
    };
    loop {
        match lexer.next() {
            Token::Eof => break,
            Token::Error(reason) => return Err(error(&lexer, reason)),
            Token::Single => stack.push(Node::Single),
            Token::Text(text) => stack.push(Node::Text(text.chars().collect())),
            Token::RangeOpen => stack.push(parse_range(&mut lexer)?),
            Token::Any | Token::Super => stack.push(Node::Star),
            Token::TermsOpen => {
                operators.push(Operator::Terms(stack.len()));
                operators.push(Operator::List(stack.len()));
            }
            Token::TermSeparator => {
                let Some(top) = operators.last().copied() else {
                    return Err(error(&lexer, "unexpected `,`".into()));
                };
                let index = match top {
                    Operator::List(index) => {
                        operators.pop();
                        index
                    }
                    Operator::Terms(index) => index,
                };
                if index == stack.len() {
                    stack.push(Node::Sequence(Vec::new()));
                } else {
                    let items = stack.split_off(index);
                    stack.push(Node::Sequence(items));
                }
                operators.push(Operator::List(stack.len()));
            }
            Token::TermsClose => loop {
                let Some(top) = operators.pop() else {
                    return Err(error(&lexer, "unexpected `}`".into()));
                };
                let (index, is_terms) = match top {
                    Operator::Terms(index) => (index, true),
                    Operator::List(index) => (index, false),
                };
                let items = stack.split_off(index.min(stack.len()));
                stack.push(if is_terms {
                    Node::Alternatives(items)
                } else {
                    Node::Sequence(items)
                });
                if is_terms {
                    break;
                }
            },
            other => {
                return Err(error(&lexer, format!("unexpected token {other:?}")));
            }
        }
    }
    if !operators.is_empty() {
        return Err(error(&lexer, "unclosed `{`".into()));
    }
    Ok(Node::Sequence(stack))
}

fn parse_range(lexer: &mut Lexer) -> Result<Node, GlobError> {
    let mut not = false;
    let mut lo: Option<char> = None;
    let mut hi: Option<char> = None;
    let mut chars: Option<BTreeSet<char>> = None;
    loop {
        let error = |lexer: &Lexer, reason: &str| GlobError {
            offset: lexer.pos,
            reason: reason.to_string(),
        };
        match lexer.next() {
            Token::Eof => return Err(error(lexer, "unclosed `[`")),
            Token::Error(reason) => return Err(error(lexer, &reason)),
            Token::Not => not = true,
            Token::RangeLo(c) => lo = Some(c),
            Token::RangeBetween => {}
            Token::RangeHi(c) => {
                hi = Some(c);
                if lo.is_some_and(|lo| c < lo) {
                    return Err(error(lexer, "range hi character is less than lo"));
                }
            }
            Token::Text(text) => chars = Some(text.chars().collect()),
            Token::RangeClose => {
                let is_range = lo.is_some() && hi.is_some();
                return match (is_range, lo, hi, chars) {
                    (true, Some(lo), Some(hi), None) => Ok(Node::Range { lo, hi, not }),
                    (false, _, _, Some(chars)) => Ok(Node::Set { chars, not }),
                    _ => Err(error(lexer, "could not parse range")),
                };
            }
            // Other tokens cannot occur inside a class; gobwas ignores them too.
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "../unit_tests/argocd_glob_tests.rs"]
mod tests;
