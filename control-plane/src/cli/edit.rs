//! The CLI's line editor, sans-IO: keys in (parsed from the terminal's bytes), the line,
//! its cursor and the history out; completion asks the caller for candidates.

/// A key the editor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Backspace,
    Delete,
    Left,
    Right,
    Home,
    End,
    Up,
    Down,
    Tab,
    /// Ctrl-U: the line is cleared.
    Kill,
    /// Ctrl-C: the line is dropped.
    Interrupt,
    /// Ctrl-D: on an empty line, the end.
    Eof,
}

/// Cuts terminal input into keys (UTF-8 text, and the VT100 escapes for arrows, Home,
/// End and Delete); bytes it does not know are skipped.
pub fn keys(bytes: &[u8]) -> Vec<Key> {
    let mut out = Vec::new();
    let text = String::from_utf8_lossy(bytes);
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        out.push(match c {
            '\r' | '\n' => Key::Enter,
            '\u{7f}' | '\u{8}' => Key::Backspace,
            '\t' => Key::Tab,
            '\u{1}' => Key::Home,
            '\u{5}' => Key::End,
            '\u{15}' => Key::Kill,
            '\u{3}' => Key::Interrupt,
            '\u{4}' => Key::Eof,
            '\u{1b}' => {
                if !matches!(it.peek(), Some('[' | 'O')) {
                    continue;
                }
                it.next();
                match it.next() {
                    Some('A') => Key::Up,
                    Some('B') => Key::Down,
                    Some('C') => Key::Right,
                    Some('D') => Key::Left,
                    Some('H') => Key::Home,
                    Some('F') => Key::End,
                    Some(d @ '1'..='8') => {
                        let tilde = it.next_if_eq(&'~').is_some();
                        match (d, tilde) {
                            ('3', true) => Key::Delete,
                            ('1' | '7', true) => Key::Home,
                            ('4' | '8', true) => Key::End,
                            _ => continue,
                        }
                    }
                    _ => continue,
                }
            }
            c if c.is_control() => continue,
            c => Key::Char(c),
        });
    }
    out
}

/// What a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The line changed: draw it again.
    Redraw,
    /// A line was entered.
    Submit(String),
    /// The user is done.
    End,
    /// Completion has several candidates: show them.
    Candidates(Vec<String>),
}

/// The line being edited and the history of entered lines.
#[derive(Debug, Default)]
pub struct Editor {
    line: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Where Up/Down is in the history, and the line being edited before it moved.
    browsing: Option<usize>,
    draft: Vec<char>,
}

impl Editor {
    pub fn new() -> Editor {
        Editor::default()
    }

    pub fn line(&self) -> String {
        self.line.iter().collect()
    }

    /// The cursor's position, in characters from the start of the line.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Applies `key`; `complete` gives the candidates for the word before the cursor
    /// (the whole line up to the cursor is its argument).
    pub fn key(&mut self, key: Key, complete: impl FnOnce(&str) -> Vec<String>) -> Action {
        match key {
            Key::Char(c) => {
                self.line.insert(self.cursor, c);
                self.cursor += 1;
            }
            Key::Enter => {
                let line = self.line();
                if !line.trim().is_empty() && self.history.last() != Some(&line) {
                    self.history.push(line.clone());
                }
                self.line.clear();
                self.cursor = 0;
                self.browsing = None;
                return Action::Submit(line);
            }
            Key::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.line.remove(self.cursor);
            }
            Key::Delete if self.cursor < self.line.len() => {
                self.line.remove(self.cursor);
            }
            Key::Left => self.cursor = self.cursor.saturating_sub(1),
            Key::Right => self.cursor = (self.cursor + 1).min(self.line.len()),
            Key::Home => self.cursor = 0,
            Key::End => self.cursor = self.line.len(),
            Key::Up => {
                let at = match self.browsing {
                    None if self.history.is_empty() => return Action::Redraw,
                    None => {
                        self.draft = self.line.clone();
                        self.history.len() - 1
                    }
                    Some(i) => i.saturating_sub(1),
                };
                self.browsing = Some(at);
                self.set(self.history[at].chars().collect());
            }
            Key::Down => match self.browsing {
                Some(i) if i + 1 < self.history.len() => {
                    self.browsing = Some(i + 1);
                    self.set(self.history[i + 1].chars().collect());
                }
                Some(_) => {
                    self.browsing = None;
                    let draft = std::mem::take(&mut self.draft);
                    self.set(draft);
                }
                None => {}
            },
            Key::Tab => {
                let before: String = self.line[..self.cursor].iter().collect();
                let word_start = before.rfind(' ').map_or(0, |i| i + 1);
                let word = &before[word_start..];
                let found: Vec<String> = complete(&before).into_iter().filter(|c| c.starts_with(word)).collect();
                let common = common_prefix(&found);
                if common.len() > word.len() {
                    let add: Vec<char> = common[word.len()..].chars().collect();
                    let n = add.len();
                    self.line.splice(self.cursor..self.cursor, add);
                    self.cursor += n;
                    if found.len() == 1 {
                        self.line.insert(self.cursor, ' ');
                        self.cursor += 1;
                    }
                } else if found.len() > 1 {
                    return Action::Candidates(found);
                }
            }
            Key::Kill | Key::Interrupt => {
                self.line.clear();
                self.cursor = 0;
                self.browsing = None;
            }
            Key::Eof if self.line.is_empty() => return Action::End,
            Key::Eof | Key::Backspace | Key::Delete => {}
        }
        Action::Redraw
    }

    fn set(&mut self, line: Vec<char>) {
        self.line = line;
        self.cursor = self.line.len();
    }
}

fn common_prefix(words: &[String]) -> String {
    let Some(first) = words.first() else { return String::new() };
    let mut len = first.len();
    for w in &words[1..] {
        len = first.bytes().zip(w.bytes()).take(len).take_while(|(a, b)| a == b).count();
    }
    first[..len].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_in(e: &mut Editor, bytes: &[u8]) -> Vec<Action> {
        keys(bytes).into_iter().map(|k| e.key(k, |_| vec!["status".into(), "show".into(), "sofia".into()])).collect()
    }

    #[test]
    fn arrows_move_the_cursor_and_edits_land_there() {
        let mut e = Editor::new();
        type_in(&mut e, b"sttus\x1b[D\x1b[D\x1b[Da");
        assert_eq!(e.line(), "status");
        type_in(&mut e, b"\x01\x1b[3~\x05x\x7f");
        assert_eq!(e.line(), "tatus");
        assert_eq!(type_in(&mut e, b"\r").last(), Some(&Action::Submit("tatus".into())));
    }

    #[test]
    fn up_and_down_walk_the_history_back_to_the_draft() {
        let mut e = Editor::new();
        type_in(&mut e, b"status\rshow channels\rdra");
        type_in(&mut e, b"\x1b[A");
        assert_eq!(e.line(), "show channels");
        type_in(&mut e, b"\x1b[A\x1b[A");
        assert_eq!(e.line(), "status");
        type_in(&mut e, b"\x1b[B\x1b[B");
        assert_eq!(e.line(), "dra");
    }

    #[test]
    fn tab_completes_a_unique_word_and_lists_several() {
        let mut e = Editor::new();
        type_in(&mut e, b"st\t");
        assert_eq!(e.line(), "status ");
        let mut e = Editor::new();
        assert_eq!(
            type_in(&mut e, b"s\t").last(),
            Some(&Action::Candidates(vec!["status".into(), "show".into(), "sofia".into()]))
        );
        let mut e = Editor::new();
        type_in(&mut e, b"so\t");
        assert_eq!(e.line(), "sofia ");
    }

    #[test]
    fn ctrl_d_on_an_empty_line_ends_and_ctrl_c_drops_the_line() {
        let mut e = Editor::new();
        type_in(&mut e, b"abc\x03");
        assert_eq!(e.line(), "");
        assert_eq!(type_in(&mut e, b"\x04").last(), Some(&Action::End));
    }
}
