//! JSON with comments (JSONC), as devcontainer.json is written.
//!
//! The spec's schema says trailing commas are not allowed, but the reference
//! CLI parses with Microsoft's fault-tolerant `jsonc-parser` and its own
//! fixtures have trailing commas, so they are accepted here too. Unlike the
//! reference CLI, a real syntax error is never dropped: it is reported with
//! its line and column and what was expected there.
//!
//! Besides the value, the parser records where every value starts (by JSON
//! pointer), so that later checks ("`runArgs` must be an array") can point at
//! the right line too.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A syntax error: where, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: expected {expected}, found {found}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub expected: String,
    pub found: String,
}

/// A parsed document: the value and where each part of it starts.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    /// JSON pointer (`/build/args/FOO`) → position of that value, and
    /// `POINTER#key` → position of the property's name.
    pub positions: HashMap<String, Pos>,
}

impl Document {
    /// Where the value at `pointer` starts, or the document start.
    pub fn pos(&self, pointer: &str) -> Pos {
        self.positions
            .get(pointer)
            .copied()
            .unwrap_or(Pos { line: 1, col: 1 })
    }
}

/// Nesting bound: a hostile file of `[[[[…` must not overflow the stack.
const MAX_DEPTH: usize = 128;

pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let mut p = Parser {
        chars: text.char_indices().peekable(),
        text,
        line: 1,
        col: 1,
        positions: HashMap::new(),
    };
    // A UTF-8 byte order mark is allowed at the start (editors on Windows write one).
    if p.peek() == Some('\u{feff}') {
        p.bump();
    }
    p.skip_trivia()?;
    let value = p.value(String::new(), 0)?;
    p.skip_trivia()?;
    if let Some(c) = p.peek() {
        return Err(p.error("the end of the file", describe(Some(c))));
    }
    Ok(Document {
        value,
        positions: p.positions,
    })
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
    line: usize,
    col: usize,
    positions: HashMap<String, Pos>,
}

fn describe(c: Option<char>) -> String {
    match c {
        None => "the end of the file".into(),
        Some(c) if c.is_control() => format!("{:?}", c),
        Some(c) => format!("'{c}'"),
    }
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|&(_, c)| c)
    }

    fn bump(&mut self) -> Option<char> {
        let (_, c) = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn here(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn error(&self, expected: &str, found: String) -> SyntaxError {
        SyntaxError {
            pos: self.here(),
            expected: expected.into(),
            found,
        }
    }

    fn skip_trivia(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() || c == '\u{feff}' => {
                    self.bump();
                }
                Some('/') => {
                    let start = self.here();
                    self.bump();
                    match self.peek() {
                        Some('/') => {
                            while let Some(c) = self.peek() {
                                if c == '\n' {
                                    break;
                                }
                                self.bump();
                            }
                        }
                        Some('*') => {
                            self.bump();
                            let mut closed = false;
                            while let Some(c) = self.bump() {
                                if c == '*' && self.peek() == Some('/') {
                                    self.bump();
                                    closed = true;
                                    break;
                                }
                            }
                            if !closed {
                                return Err(SyntaxError {
                                    pos: start,
                                    expected: "'*/' to close this comment".into(),
                                    found: "the end of the file".into(),
                                });
                            }
                        }
                        c => {
                            return Err(SyntaxError {
                                pos: start,
                                expected: "a comment ('//' or '/*') or a value".into(),
                                found: format!("'/' followed by {}", describe(c)),
                            });
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, pointer: String, depth: usize) -> Result<Value, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error(
                &format!("at most {MAX_DEPTH} levels of nesting"),
                "deeper nesting".into(),
            ));
        }
        self.positions.insert(pointer.clone(), self.here());
        match self.peek() {
            Some('{') => self.object(pointer, depth),
            Some('[') => self.array(pointer, depth),
            Some('"') => Ok(Value::String(self.string()?)),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.here();
                let mut word = String::new();
                while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric()) {
                    word.push(c);
                    self.bump();
                }
                match word.as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" => Ok(Value::Null),
                    _ => Err(SyntaxError {
                        pos: start,
                        expected: "a value (string, number, object, array, true, false or null)"
                            .into(),
                        found: format!("{word:?} (strings need double quotes)"),
                    }),
                }
            }
            c => Err(self.error(
                "a value (string, number, object, array, true, false or null)",
                describe(c),
            )),
        }
    }

    fn object(&mut self, pointer: String, depth: usize) -> Result<Value, SyntaxError> {
        self.bump(); // {
        let mut map = Map::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some('}') => {
                    self.bump();
                    return Ok(Value::Object(map));
                }
                Some('"') => {}
                c => return Err(self.error("a property name in double quotes or '}'", describe(c))),
            }
            let key_pos = self.here();
            let key = self.string()?;
            self.skip_trivia()?;
            if self.peek() != Some(':') {
                let c = self.peek();
                return Err(self.error("':' after the property name", describe(c)));
            }
            self.bump();
            self.skip_trivia()?;
            let child = format!("{pointer}/{}", pointer_token(&key));
            self.positions.insert(format!("{child}#key"), key_pos);
            let v = self.value(child, depth + 1)?;
            // Duplicate keys: the last wins, as with JSON.parse.
            map.insert(key, v);
            self.skip_trivia()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                c => return Err(self.error("',' or '}'", describe(c))),
            }
        }
    }

    fn array(&mut self, pointer: String, depth: usize) -> Result<Value, SyntaxError> {
        self.bump(); // [
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            if self.peek() == Some(']') {
                self.bump();
                return Ok(Value::Array(items));
            }
            let child = format!("{pointer}/{}", items.len());
            items.push(self.value(child, depth + 1)?);
            self.skip_trivia()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {}
                c => return Err(self.error("',' or ']'", describe(c))),
            }
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.here();
        self.bump(); // "
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(SyntaxError {
                        pos: start,
                        expected: "a closing '\"' for this string".into(),
                        found: "the end of the file".into(),
                    });
                }
                Some('"') => return Ok(s),
                Some('\n') => {
                    return Err(SyntaxError {
                        pos: start,
                        expected: "a closing '\"' on the same line (use \\n for a newline)".into(),
                        found: "the end of the line".into(),
                    });
                }
                Some('\\') => {
                    let at = self.here();
                    let e = self.bump();
                    match e {
                        Some('"') => s.push('"'),
                        Some('\\') => s.push('\\'),
                        Some('/') => s.push('/'),
                        Some('b') => s.push('\u{8}'),
                        Some('f') => s.push('\u{c}'),
                        Some('n') => s.push('\n'),
                        Some('r') => s.push('\r'),
                        Some('t') => s.push('\t'),
                        Some('u') => {
                            let hi = self.hex4(at)?;
                            let c = if (0xd800..0xdc00).contains(&hi) {
                                // A surrogate pair: \uD83D\uDE00.
                                if self.bump() != Some('\\') || self.bump() != Some('u') {
                                    return Err(SyntaxError {
                                        pos: at,
                                        expected:
                                            "a low surrogate (\\uDC00-\\uDFFF) after a high one"
                                                .into(),
                                        found: "something else".into(),
                                    });
                                }
                                let lo = self.hex4(at)?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(SyntaxError {
                                        pos: at,
                                        expected: "a low surrogate (\\uDC00-\\uDFFF)".into(),
                                        found: format!("\\u{lo:04X}"),
                                    });
                                }
                                char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                            } else {
                                char::from_u32(hi)
                            };
                            s.push(c.unwrap_or('\u{fffd}'));
                        }
                        c => {
                            return Err(SyntaxError {
                                pos: at,
                                expected: "an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"
                                    .into(),
                                found: describe(c),
                            });
                        }
                    }
                }
                Some(c) => s.push(c),
            }
        }
    }

    fn hex4(&mut self, at: Pos) -> Result<u32, SyntaxError> {
        let mut v = 0;
        for _ in 0..4 {
            let c = self.bump();
            let d = c.and_then(|c| c.to_digit(16)).ok_or_else(|| SyntaxError {
                pos: at,
                expected: "four hex digits after \\u".into(),
                found: describe(c),
            })?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.here();
        let from = self.chars.peek().map_or(self.text.len(), |&(i, _)| i);
        let mut to = from;
        while let Some(&(i, c)) = self.chars.peek() {
            if c.is_ascii_digit() || "+-.eE".contains(c) {
                to = i + c.len_utf8();
                self.bump();
            } else {
                break;
            }
        }
        let lit = &self.text[from..to];
        serde_json::from_str::<Number>(lit)
            .map(Value::Number)
            .map_err(|_| SyntaxError {
                pos: start,
                expected: "a number".into(),
                found: format!("{lit:?}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comments_and_trailing_commas_are_accepted() {
        let d = parse(
            "// top\n{\n  /* block\n comment */ \"a\": [1, 2,], // after\n  \"b\": {\"c\": \"//not a comment\",},\n}\n",
        )
        .unwrap();
        assert_eq!(d.value, json!({"a": [1, 2], "b": {"c": "//not a comment"}}));
        assert_eq!(d.pos("/a"), Pos { line: 4, col: 18 });
        assert_eq!(d.pos("/b/c"), Pos { line: 5, col: 14 });
    }

    #[test]
    fn errors_name_line_column_and_expectation() {
        let e = parse("{\n  \"image\": \"x\"\n  \"name\": 1\n}").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 3 });
        assert_eq!(e.expected, "',' or '}'");
        let e = parse("{\"a\": tru}").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 7 });
        assert!(e.found.contains("tru"), "{e}");
        let e = parse("{\"a\": 1} x").unwrap_err();
        assert_eq!(e.expected, "the end of the file");
        let e = parse("{\"a\": \"open").unwrap_err();
        assert!(e.expected.contains("closing"), "{e}");
        let e = parse("/* never closed").unwrap_err();
        assert!(e.expected.contains("*/"), "{e}");
        assert!(parse("").is_err());
        assert!(parse("{'a': 1}").is_err());
    }

    #[test]
    fn escapes_and_unicode() {
        let d = parse(r#"["\u00e9\ud83d\ude00\n\"", "é"]"#).unwrap();
        assert_eq!(d.value, json!(["é😀\n\"", "é"]));
        assert!(parse(r#"["\ud83d"]"#).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let s = "[".repeat(100_000);
        let e = parse(&s).unwrap_err();
        assert!(e.expected.contains("nesting"), "{e}");
    }

    proptest::proptest! {
        /// Any JSON serde_json writes parses to the same value, and no input panics.
        #[test]
        fn json_round_trips(s in "\\PC{0,64}", n in proptest::num::i64::ANY, b: bool) {
            let v = json!({"s": s, "n": n, "b": b, "a": [s.clone(), null]});
            let text = serde_json::to_string_pretty(&v).unwrap();
            proptest::prop_assert_eq!(parse(&text).unwrap().value, v);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }
    }
}
