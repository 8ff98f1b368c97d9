//! The field table of a job: every record path and derived field an expression or aggregate
//! reads gets one slot, so a decoded record is a flat `[Value]` indexed by slot.

/// Where a slot's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotSource {
    /// A dotted path into the JSON record, split into its segments.
    Path(Vec<String>),
    /// A derived field computed by a CEL expression after decoding.
    Derived(String),
}

/// Slots of one job, in the order they were first referenced.
#[derive(Clone, Debug, Default)]
pub struct FieldTable {
    slots: Vec<SlotSource>,
}

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a derived field; returns its slot. Derived names shadow record paths.
    pub fn declare_derived(&mut self, name: &str) -> usize {
        if let Some(slot) = self.derived(name) {
            return slot;
        }
        self.slots.push(SlotSource::Derived(name.to_string()));
        self.slots.len() - 1
    }

    /// The slot of a derived field, if `name` is one.
    pub fn derived(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| matches!(s, SlotSource::Derived(n) if n == name))
    }

    /// The slot for a dotted record path (`a.b.c`), or for a derived field of that name.
    pub fn slot_for_path(&mut self, dotted: &str) -> usize {
        if let Some(slot) = self.derived(dotted) {
            return slot;
        }
        let segments: Vec<String> = dotted.split('.').map(str::to_string).collect();
        self.slot_for_segments(segments)
    }

    /// The slot for a record path given as segments.
    pub fn slot_for_segments(&mut self, segments: Vec<String>) -> usize {
        if segments.len() == 1 {
            if let Some(slot) = self.derived(&segments[0]) {
                return slot;
            }
        }
        if let Some(slot) =
            self.slots.iter().position(|s| matches!(s, SlotSource::Path(p) if *p == segments))
        {
            return slot;
        }
        self.slots.push(SlotSource::Path(segments));
        self.slots.len() - 1
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot is declared.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// All slots with their sources.
    pub fn slots(&self) -> &[SlotSource] {
        &self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_share_slots_and_derived_names_shadow_paths() {
        let mut t = FieldTable::new();
        let a = t.slot_for_path("meta.server");
        assert_eq!(t.slot_for_path("meta.server"), a);
        let d = t.declare_derived("big");
        assert_eq!(t.slot_for_path("big"), d);
        assert_ne!(t.slot_for_path("amount"), a);
        assert_eq!(t.len(), 3);
    }
}
