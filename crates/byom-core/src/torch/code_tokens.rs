//! One tokenizer for TorchScript code text (the `code/**.py` records `torch.jit.save` writes),
//! feeding every reader that looks for calls in it: the operator scan ([`super::ops::scan`]) and
//! the operator-version evidence ([`super::version::aten_calls`]).
//!
//! Why one: both readers must agree on what is a call and what is text. A string literal that
//! mentions `torch.pad(x)` (an error message in a scripted `raise`) is not a call for either; a
//! dotted name after a `.` (`x.torch.gelu`) is an attribute, not `torch.gelu`. Two hand-written
//! scanners disagreed on exactly these (triple-quoted strings, a newline ending an unterminated
//! literal). The tokenizer is a single forward pass, no backtracking and no allocation: linear in
//! the code's length, which `max_code_bytes` already caps.

use std::borrow::Cow;

/// One token of TorchScript code. Whitespace and comments-free: TorchScript's printer writes no
/// comments, and whitespace only separates tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A dotted name `ident(.ident)*` (`torch.gelu`, `ops.torchvision.nms`, `self.conv1`). An
    /// identifier starts with a letter or `_`. `member` is true when a `.` comes right before it
    /// (`(x).torch.gelu`, `f().ops.x.y`): an attribute of some value, never a free name.
    Name {
        text: &'a str,
        member: bool,
    },
    /// A string literal, quotes and escapes included (single, double, triple-quoted). A
    /// one-line literal left open ends at the line's end.
    Str,
    /// `(`, `[` or `{`.
    Open(u8),
    /// `)`, `]` or `}`.
    Close(u8),
    Comma,
    /// A lone `=` (not `==`, `<=`, `>=`, `!=`): what marks a keyword argument in a call.
    Assign,
    /// Anything else: a number, an operator, a `.` that starts no name.
    Other,
}

/// The tokens of `code`, in order.
pub fn tokens(code: &str) -> Tokens<'_> {
    Tokens { code, i: 0 }
}

/// Iterator over the [`Token`]s of a code text.
pub struct Tokens<'a> {
    code: &'a str,
    i: usize,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// Skips a Python string literal starting at `i` (a quote); returns the index after it.
fn skip_string(code: &[u8], i: usize) -> usize {
    let quote = code[i];
    let triple = code.get(i..i + 3) == Some(&[quote; 3][..]);
    let mut j = i + if triple { 3 } else { 1 };
    while j < code.len() {
        match code[j] {
            b'\\' => j += 2,
            b if b == quote && (!triple || code.get(j..j + 3) == Some(&[quote; 3][..])) => {
                return j + if triple { 3 } else { 1 };
            }
            b'\n' if !triple => return j,
            _ => j += 1,
        }
    }
    code.len()
}

/// `code` with the inside of every string literal blanked to spaces, the quotes kept: the same
/// length and the same byte offsets, so a reader that scans for brackets, commas, `=` or `:`
/// finds only the code's own (TorchScript prints string constants as they are: `"a(b,"` in a
/// `raise` message or a `getattr` name would otherwise open a bracket or split an argument).
/// Literals end as [`tokens`] ends them (escapes, triple quotes, an open one ending at its
/// line's end). Borrowed when there is no quote; one pass, linear in the length.
pub fn blank_strings(code: &str) -> Cow<'_, str> {
    let b = code.as_bytes();
    if !b.iter().any(|&c| c == b'"' || c == b'\'') {
        return Cow::Borrowed(code);
    }
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        let quote = b[i];
        if quote != b'"' && quote != b'\'' {
            i += 1;
            continue;
        }
        let end = skip_string(b, i).min(b.len());
        let q = if b.get(i..i + 3) == Some(&[quote; 3][..]) {
            3
        } else {
            1
        };
        // The closing quote(s) stay when the literal was closed; everything inside is blanked.
        let closed = end >= i + 2 * q && b[end - q..end].iter().all(|&c| c == quote);
        let inner = (i + q).min(end)..if closed { end - q } else { end };
        for c in &mut out[inner] {
            // A newline stays: line-based readers still see the code's lines.
            if *c != b'\n' {
                *c = b' ';
            }
        }
        i = end.max(i + 1);
    }
    // Only literals' insides were replaced, and a literal starts and ends at an ASCII byte (or
    // the end), so every multi-byte character is either kept whole or blanked whole.
    Cow::Owned(String::from_utf8(out).unwrap_or_else(|e| {
        e.into_bytes()
            .into_iter()
            .map(|c| if c.is_ascii() { c as char } else { ' ' })
            .collect()
    }))
}

impl<'a> Tokens<'a> {
    /// The dotted name starting at `start` (an identifier start): its end.
    fn dotted_end(&self, start: usize) -> usize {
        let b = self.code.as_bytes();
        let mut j = start;
        loop {
            while j < b.len() && is_ident_byte(b[j]) {
                j += 1;
            }
            if j + 1 < b.len() && b[j] == b'.' && is_ident_start(b[j + 1]) {
                j += 1;
                continue;
            }
            return j;
        }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let b = self.code.as_bytes();
        while self.i < b.len() && b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
        let i = self.i;
        let &c = b.get(i)?;
        let (token, end) = match c {
            b'"' | b'\'' => (Token::Str, skip_string(b, i)),
            c if is_ident_start(c) => {
                let end = self.dotted_end(i);
                let member = i > 0 && b[i - 1] == b'.';
                (
                    Token::Name {
                        text: &self.code[i..end],
                        member,
                    },
                    end,
                )
            }
            // A number (`1`, `2e5`, `0x1F`): digits and the letters glued to them.
            c if c.is_ascii_digit() => {
                let mut j = i;
                while j < b.len() && is_ident_byte(b[j]) {
                    j += 1;
                }
                (Token::Other, j)
            }
            b'(' | b'[' | b'{' => (Token::Open(c), i + 1),
            b')' | b']' | b'}' => (Token::Close(c), i + 1),
            b',' => (Token::Comma, i + 1),
            b'=' | b'<' | b'>' | b'!' if b.get(i + 1) == Some(&b'=') => (Token::Other, i + 2),
            b'=' => (Token::Assign, i + 1),
            _ => (Token::Other, i + 1),
        };
        self.i = end.max(i + 1);
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(code: &str) -> Vec<(&str, bool)> {
        tokens(code)
            .filter_map(|t| match t {
                Token::Name { text, member } => Some((text, member)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dotted_names_members_and_calls() {
        let code = "y = torch.gelu(x, approximate=\"tanh\")\nz = (y).torch.pad(y, [1])";
        assert_eq!(
            names(code),
            vec![
                ("y", false),
                ("torch.gelu", false),
                ("x", false),
                ("approximate", false),
                ("z", false),
                ("y", false),
                ("torch.pad", true),
                ("y", false),
            ]
        );
        let kinds: Vec<Token<'_>> = tokens("f(a=1, b==2)").collect();
        assert_eq!(
            kinds,
            vec![
                Token::Name {
                    text: "f",
                    member: false
                },
                Token::Open(b'('),
                Token::Name {
                    text: "a",
                    member: false
                },
                Token::Assign,
                Token::Other,
                Token::Comma,
                Token::Name {
                    text: "b",
                    member: false
                },
                Token::Other,
                Token::Other,
                Token::Close(b')'),
            ]
        );
    }

    #[test]
    fn strings_hide_what_they_say() {
        // Single, triple-quoted (over lines), escaped quotes; an open one-line literal ends at
        // its line's end; one left open at the end swallows the rest.
        let code =
            "a = \"torch.x(\\\"\"\nb = '''ops.m.n(\n'''\nc = \"open torch.y(\nd\ne = 'torch.z(";
        assert_eq!(
            names(code),
            vec![
                ("a", false),
                ("b", false),
                ("c", false),
                ("d", false),
                ("e", false)
            ]
        );
    }

    #[test]
    fn blanking_strings_keeps_offsets_and_hides_brackets() {
        let code = r#"f("a(b,", 'c)\'', x)"#;
        let blank = blank_strings(code);
        assert_eq!(blank.len(), code.len());
        assert_eq!(blank, r#"f("    ", '    ', x)"#);
        // Triple quotes over lines keep the newline; an open literal blanks to its line's end;
        // non-ASCII inside a literal is blanked whole, outside it is kept; a trailing backslash
        // ends nothing.
        assert_eq!(blank_strings("a('''(\n,''')"), "a(''' \n ''')");
        assert_eq!(blank_strings("a(\"(,\nb)"), "a(\"  \nb)");
        assert_eq!(blank_strings("é(\"é,\")"), "é(\"   \")");
        assert_eq!(blank_strings("x(\"\\"), "x(\" ");
        assert_eq!(blank_strings("\"\""), "\"\"");
        assert_eq!(blank_strings("'"), "'");
        assert!(matches!(blank_strings("no quotes (,)"), Cow::Borrowed(_)));
    }

    #[test]
    fn numbers_are_not_names() {
        assert_eq!(
            names("x = 2torch.gelu + 0.5e3"),
            vec![("x", false), ("gelu", true)]
        );
    }
}
