//! Reading a TOML document into a config struct while collecting every problem with its place:
//! syntax errors, every unknown key (with the nearest valid key), and invalid values. The struct
//! itself is the schema: valid keys are read off its `Deserialize` impl, never listed twice.

use serde::de::{self, Deserialize, DeserializeOwned, Visitor};

use crate::diagnostic::{Diagnostic, Location, did_you_mean};

/// A TOML text embedded in a file at byte `offset` (0 for a whole `.toml` file).
pub(crate) struct TomlSource<'a> {
    pub file: &'a str,
    pub file_text: &'a str,
    pub offset: usize,
    pub what: &'a str,
}

impl TomlSource<'_> {
    fn location(&self, toml_offset: usize) -> Location {
        Location::at_offset(self.file, self.file_text, self.offset + toml_offset)
    }

    fn text(&self, len: usize) -> &str {
        &self.file_text[self.offset..self.offset + len]
    }
}

/// The valid keys of the table at a path of keys (from its struct), or `None` for a free-form
/// map whose keys are the user's own (`[columns]`, `[storage.options]`).
pub(crate) type KeysAt = fn(&[String]) -> Option<&'static [&'static str]>;

/// Parse `toml` (the text at `src`) into `T`. Returns `None` when the text cannot be read as a
/// `T` at all; every problem found, fatal or not, is pushed to `out`.
pub(crate) fn parse<T: DeserializeOwned>(
    src: &TomlSource<'_>,
    toml: &str,
    keys_at: KeysAt,
    out: &mut Vec<Diagnostic>,
) -> Option<T> {
    debug_assert_eq!(src.text(toml.len()), toml);
    let doc = match toml_edit::Document::parse(toml) {
        Ok(doc) => doc,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let message = e.message().lines().next().unwrap_or("invalid TOML").trim().to_string();
            out.push(
                Diagnostic::error(src.location(at), format!("TOML syntax error in {}: {message}", src.what))
                    .with_hint("see https://toml.io for the syntax"),
            );
            return None;
        }
    };
    let mut unknown = Vec::new();
    unknown_keys(doc.as_table(), &mut Vec::new(), keys_at, &mut unknown);
    unknown.sort_by_key(|(at, _, _)| *at);
    for (at, path, valid) in unknown {
        let key = path.last().expect("a key has a name");
        let mut d = Diagnostic::error(src.location(at), format!("unknown key `{}` in {}", path.join("."), src.what));
        if let Some(near) = did_you_mean(key, valid.iter().copied()) {
            d = d.with_hint(format!("did you mean `{near}`?"));
        } else {
            d = d.with_hint(format!("valid keys here: {}", valid.join(", ")));
        }
        out.push(d);
    }
    match toml::from_str::<T>(toml) {
        Ok(value) => Some(value),
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            out.push(
                Diagnostic::error(
                    src.location(at),
                    format!("invalid value in {}: {}", src.what, one_line(e.message())),
                )
                .with_hint("check the value's type and spelling against the commented defaults of `basin init`"),
            );
            None
        }
    }
}

/// Walk every table of the document and collect keys its struct does not have, as
/// `(byte offset, path, valid keys)`. Tables `keys_at` does not know (free-form maps) are
/// walked without checking their own keys.
fn unknown_keys(
    table: &dyn toml_edit::TableLike,
    path: &mut Vec<String>,
    keys_at: KeysAt,
    out: &mut Vec<(usize, Vec<String>, &'static [&'static str])>,
) {
    let valid = keys_at(path);
    for (name, item) in table.iter() {
        path.push(name.to_string());
        match valid {
            Some(valid) if !valid.contains(&name) => {
                let at = table.key(name).and_then(|k| k.span()).map_or(0, |s| s.start);
                out.push((at, path.clone(), valid));
            }
            _ => match item {
                toml_edit::Item::Table(t) => unknown_keys(t, path, keys_at, out),
                toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => unknown_keys(t, path, keys_at, out),
                toml_edit::Item::ArrayOfTables(a) => a.iter().for_each(|t| unknown_keys(t, path, keys_at, out)),
                _ => {}
            },
        }
        path.pop();
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The field names of a struct, read from its `Deserialize` impl.
pub(crate) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct FieldsProbe<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for FieldsProbe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldsProbe(&mut fields));
    fields
}
