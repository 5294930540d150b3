//! The unit being assigned: an id and borrowed string attributes.

pub use abkit_strategy_api::Attribute;

/// A unit to assign (user, device, household ...): an id plus attributes for targeting and
/// for strategies that randomise by something else (region, cluster). Borrowed: building one
/// allocates nothing.
///
/// ```
/// use abkit::{Attribute, Unit};
/// const ATTRS: &[Attribute<'static>] = &[Attribute::new("country", "US")];
/// let unit = Unit::new("user-42").with_attributes(ATTRS);
/// assert_eq!(unit.attribute("country"), Some("US"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    id: &'a str,
    attributes: &'a [Attribute<'a>],
}

impl<'a> Unit<'a> {
    /// A unit with an id and no attributes.
    pub const fn new(id: &'a str) -> Self {
        Unit {
            id,
            attributes: &[],
        }
    }

    /// The same unit with these attributes.
    pub const fn with_attributes(self, attributes: &'a [Attribute<'a>]) -> Self {
        Unit {
            id: self.id,
            attributes,
        }
    }

    /// The unit id (hashed as raw UTF-8).
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// All attributes.
    pub fn attributes(&self) -> &'a [Attribute<'a>] {
        self.attributes
    }

    /// The first value of attribute `key`, if present.
    pub fn attribute(&self, key: &str) -> Option<&'a str> {
        self.attributes
            .iter()
            .find(|a| a.key.as_str() == key)
            .map(|a| a.value.as_str())
    }
}
