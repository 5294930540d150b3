//! `simulate` and `diff` over units given from Python: the units become the text input the
//! `abkit` CLI reads (one id per line, or CSV with one column per attribute), read by the
//! SDK's own reader, so the reports are those of `abkit simulate --format json` /
//! `abkit diff --format json` on a file of the same units.

use crate::columns::AttrColumn;
use abkit::simulate::{InputFormat, UnitSource};
use pyo3::exceptions::PyValueError;
use pyo3::PyResult;

/// The input name reports show (`input`).
pub(crate) const INPUT_NAME: &str = "<python>";

/// The units as an input the SDK's reader reads: the text and its format.
pub(crate) fn units_source(units: &[&str], attrs: &[AttrColumn<'_>]) -> PyResult<UnitSource> {
    let mut text = Vec::with_capacity(units.iter().map(|u| u.len() + 1).sum());
    let mut longest = 0usize;
    let format = if attrs.is_empty() {
        for (i, id) in units.iter().enumerate() {
            check_id(id, i)?;
            text.extend_from_slice(id.as_bytes());
            text.push(b'\n');
            longest = longest.max(id.len());
        }
        InputFormat::Plain
    } else {
        // The id column's name must not be an attribute's.
        let mut id_column = String::from("unit_id");
        while attrs.iter().any(|a| a.name == id_column) {
            id_column.push('_');
        }
        let mut line = Vec::new();
        push_field(&mut line, &id_column);
        for a in attrs {
            check_text(&a.name, || format!("the attribute name \"{}\"", a.name))?;
            line.push(b',');
            push_field(&mut line, &a.name);
        }
        longest = line.len();
        line.push(b'\n');
        text.extend_from_slice(&line);
        for (i, id) in units.iter().enumerate() {
            check_id(id, i)?;
            line.clear();
            push_field(&mut line, id);
            for a in attrs {
                let value = a.get(i).ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "attribute \"{}\" of units[{i}] is missing (None): simulate and diff read \
                         every attribute as a column, as `abkit simulate --id-column` does, so \
                         every unit needs a value; fill the missing ones (e.g. with \"\")",
                        a.name
                    ))
                })?;
                check_text(value, || format!("attribute \"{}\" of units[{i}]", a.name))?;
                line.push(b',');
                push_field(&mut line, value);
            }
            longest = longest.max(line.len());
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        InputFormat::Csv {
            id_column: id_column.clone(),
        }
    };
    Ok(
        UnitSource::from_reader(INPUT_NAME, std::io::Cursor::new(text), format)
            .with_max_line_bytes(longest.max(1) + 8),
    )
}

/// An id must be one non-empty line: the input is one record per line, and the CLI's reader
/// refuses an empty id.
fn check_id(id: &str, i: usize) -> PyResult<()> {
    if id.is_empty() {
        return Err(PyValueError::new_err(format!(
            "units[{i}] is an empty string: an empty id is not a unit (`abkit simulate` \
             refuses it too); drop it first"
        )));
    }
    check_text(id, || format!("units[{i}]"))
}

/// No line breaks: every record of the input is one line.
fn check_text(text: &str, what: impl Fn() -> String) -> PyResult<()> {
    if text.contains(['\n', '\r']) {
        return Err(PyValueError::new_err(format!(
            "{} holds a line break: simulate and diff read units one per line, as the CLI \
             does; remove line breaks first",
            what()
        )));
    }
    Ok(())
}

/// One CSV field, quoted (RFC 4180) when it holds a comma or a quote.
fn push_field(out: &mut Vec<u8>, field: &str) {
    if field.contains([',', '"']) {
        out.push(b'"');
        out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}
