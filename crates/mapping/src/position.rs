//! Where in an expression's text a syntax error is: jsonata-core's parser errors carry no position,
//! so we find it by re-lexing and re-parsing prefixes of the text.
//!
//! The idea: the parser reads tokens left to right, so every prefix of the expression that ends
//! before the offending token is a valid beginning of *some* expression, and parsing it fails (if
//! at all) only because the text ended too early. The first prefix, cut at a token boundary, whose
//! parse fails for another reason ends with the offending token. A lexer error (an unterminated
//! string, a bad escape) is at the first token the lexer cannot read. If every prefix only ran out
//! of text, the error is at the end (a missing closing bracket).
//!
//! This costs one lex per character and one parse per token, quadratic in the length, so it runs
//! only for failed compilations and only up to 8,000 characters; configuration expressions
//! are far shorter.

use jsonata_core::parser::{self, Lexer, ParserError, Token};

/// Longer expressions get their error reported at their first character.
pub(crate) const MAX_LOCATED_CHARS: usize = 8_000;

/// A line and column in an expression's text, both counted from 1; columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextPosition {
    pub line: usize,
    pub column: usize,
}

impl TextPosition {
    /// The position of the character at `char_offset` (a count of characters, not bytes).
    pub fn of_char_offset(text: &str, char_offset: usize) -> TextPosition {
        let mut line = 1;
        let mut column = 1;
        for character in text.chars().take(char_offset) {
            if character == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        TextPosition { line, column }
    }
}

impl std::fmt::Display for TextPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The character offset of the syntax error in `source`, which failed to parse.
pub(crate) fn locate_syntax_error(source: &str) -> usize {
    let characters: Vec<char> = source.chars().collect();
    if characters.len() > MAX_LOCATED_CHARS {
        return 0;
    }
    let (tokens, lex_failed) = lex_all(source);
    let ends = token_ends(&characters, &tokens);
    if lex_failed {
        // The lexer read `tokens` and then failed on the next one.
        let after = ends.last().copied().unwrap_or(0);
        return skip_blanks(&characters, after);
    }
    let mut previous_end = 0;
    for &end in &ends {
        let prefix: String = characters[..end].iter().collect();
        let failed_here = match catch(|| parser::parse(&prefix)) {
            Some(Ok(_)) => false,
            Some(Err(error)) => !ran_out_of_text(&error),
            // A panicking parser says nothing about where; keep looking.
            None => false,
        };
        if failed_here {
            return skip_blanks(&characters, previous_end);
        }
        previous_end = end;
    }
    characters.len()
}

/// The tokens of the whole text, up to `Eof` or the first lexer error, and whether there was one.
fn lex_all(source: &str) -> (Vec<Token>, bool) {
    let mut lexer = Lexer::new(source.to_string());
    let mut tokens = Vec::new();
    loop {
        match catch(|| lexer.next_token()) {
            Some(Ok(Token::Eof)) => return (tokens, false),
            Some(Ok(token)) => tokens.push(token),
            Some(Err(_)) | None => return (tokens, true),
        }
        if tokens.len() > MAX_LOCATED_CHARS {
            return (tokens, true);
        }
    }
}

/// For each token, the character offset just past it: the shortest prefix of the text that lexes
/// to exactly the tokens up to and including it. Lexing is left to right with at most the token
/// itself as look-ahead, so growing the prefix one character at a time finds each end in turn.
fn token_ends(characters: &[char], tokens: &[Token]) -> Vec<usize> {
    let mut ends = Vec::with_capacity(tokens.len());
    let mut length = 0;
    for index in 0..tokens.len() {
        loop {
            length += 1;
            if length > characters.len() {
                // Should not happen: the whole text lexes to all tokens. Stop rather than loop.
                return ends;
            }
            let prefix: String = characters[..length].iter().collect();
            let (prefix_tokens, _) = lex_all(&prefix);
            if prefix_tokens.len() > index && prefix_tokens[..=index] == tokens[..=index] {
                ends.push(length);
                break;
            }
        }
    }
    ends
}

/// Skips whitespace and `/* comments */` from `offset`: the start of the next token.
fn skip_blanks(characters: &[char], mut offset: usize) -> usize {
    loop {
        while offset < characters.len() && characters[offset].is_whitespace() {
            offset += 1;
        }
        if offset + 1 < characters.len() && characters[offset] == '/' && characters[offset + 1] == '*' {
            offset += 2;
            while offset + 1 < characters.len() && !(characters[offset] == '*' && characters[offset + 1] == '/') {
                offset += 1;
            }
            offset = (offset + 2).min(characters.len());
            continue;
        }
        return offset;
    }
}

/// Whether a parse failed only because the text ended: what every cut-short valid expression does.
fn ran_out_of_text(error: &ParserError) -> bool {
    match error {
        ParserError::UnexpectedEnd
        | ParserError::UnclosedString
        | ParserError::UnclosedComment
        | ParserError::UnclosedBacktick => true,
        ParserError::Expected { found, .. } => found == "Eof",
        ParserError::UnexpectedToken(token) => token == "Eof",
        other => {
            let message = other.to_string();
            message.contains("end of expression") || message.contains("Eof")
        }
    }
}

fn catch<T>(work: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str, expected: (usize, usize)) {
        assert!(parser::parse(source).is_err(), "{source:?} should not parse");
        let position = TextPosition::of_char_offset(source, locate_syntax_error(source));
        assert_eq!((position.line, position.column), expected, "{source:?}");
    }

    #[test]
    fn finds_the_offending_token() {
        check("a + + ", (1, 5));
        check("title & )", (1, 9));
        check("foo and )", (1, 9));
        check("$uppercase(title]", (1, 17));
    }

    #[test]
    fn counts_lines_and_columns_from_one() {
        check("(\n  $a := 1;\n  $a + ]\n)", (3, 8));
    }

    #[test]
    fn unterminated_strings_point_at_their_quote() {
        check("title & \"abc", (1, 9));
    }

    #[test]
    fn missing_closers_are_at_the_end() {
        check("$uppercase(title", (1, 17));
        check("(\n1 + 2", (2, 6));
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_eq!(TextPosition::of_char_offset("ä\nöü", 3), TextPosition { line: 2, column: 2 });
    }
}
