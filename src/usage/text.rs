//! Bounded buffers for the few strings the scanner must read: object keys on the tracked
//! paths and the model name. Anything longer than the cap cannot be a key we look for and
//! is not a plausible model name, so it is marked unusable instead of growing.

/// Longest model name kept, in bytes (after unescaping). Longer names are ignored.
pub const MODEL_MAX_BYTES: usize = 256;

/// Longest object key decoded, in bytes: the longest key on a tracked path
/// (`cache_creation_input_tokens`, 27) fits; a longer one is unusable, which is right,
/// since it cannot be one we look for. Small, because every scanner carries one and
/// building or moving a scanner copies it.
pub(crate) const KEY_MAX_BYTES: usize = 32;

/// A string being decoded from JSON, bounded to `N` bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Capture<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Too long, or an unpaired UTF-16 surrogate: the string is unusable.
    bad: bool,
    /// A `\uD800`..`\uDBFF` escape waiting for its low half.
    high: Option<u16>,
}

impl<const N: usize> Default for Capture<N> {
    fn default() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            bad: false,
            high: None,
        }
    }
}

impl<const N: usize> Capture<N> {
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.bad = false;
        self.high = None;
    }

    /// Appends raw (already unescaped) bytes.
    #[inline]
    pub(crate) fn push_bytes(&mut self, run: &[u8]) {
        if run.is_empty() {
            return;
        }
        // A high surrogate must be followed directly by its low-surrogate escape.
        if self.high.take().is_some() {
            self.bad = true;
        }
        let end = self.len.checked_add(run.len());
        match end.and_then(|end| self.buf.get_mut(self.len..end).map(|dst| (end, dst))) {
            Some((end, dst)) => {
                dst.copy_from_slice(run);
                self.len = end;
            }
            None => self.bad = true,
        }
    }

    fn push_char(&mut self, c: char) {
        let mut utf8 = [0u8; 4];
        self.push_bytes(c.encode_utf8(&mut utf8).as_bytes());
    }

    /// Appends the code unit of a `\uXXXX` escape, pairing surrogates.
    pub(crate) fn push_unit(&mut self, unit: u16) {
        match (self.high.take(), unit) {
            (Some(high), 0xDC00..=0xDFFF) => {
                let hi = u32::from(high & 0x3FF).wrapping_shl(10);
                let lo = u32::from(unit & 0x3FF);
                match char::from_u32(0x1_0000 | hi | lo) {
                    Some(c) => self.push_char(c),
                    None => self.bad = true,
                }
            }
            (Some(_), _) | (None, 0xDC00..=0xDFFF) => self.bad = true,
            (None, 0xD800..=0xDBFF) => self.high = Some(unit),
            (None, _) => match char::from_u32(u32::from(unit)) {
                Some(c) => self.push_char(c),
                None => self.bad = true,
            },
        }
    }

    /// The decoded bytes, or `None` if the string is unusable. Call at the closing quote.
    pub(crate) fn finish(&self) -> Option<&[u8]> {
        if self.bad || self.high.is_some() {
            return None;
        }
        self.buf.get(..self.len)
    }
}

/// A model name that was read in full: 1..=[`MODEL_MAX_BYTES`] bytes of valid UTF-8.
///
/// On the heap, allocated when a model is first seen: the findings that carry it are built
/// and moved with every scanner, and wasm fuel counts every byte moved, so an inline buffer
/// of [`MODEL_MAX_BYTES`] would cost more than the allocation.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelName {
    /// Empty until a usable name is seen.
    text: String,
}

impl ModelName {
    /// Keeps `bytes` if they are a usable model name (then `true`); otherwise keeps the
    /// previous one.
    pub(crate) fn set(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() || bytes.len() > MODEL_MAX_BYTES {
            return false;
        }
        let text = if bytes.is_ascii() {
            // SAFETY: ASCII is valid UTF-8. Model names nearly always are ASCII, and this
            // test costs a fraction of `from_utf8`'s in wasm.
            unsafe { core::str::from_utf8_unchecked(bytes) }
        } else {
            match core::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => return false,
            }
        };
        self.text.clear();
        self.text.push_str(text);
        true
    }

    /// The name's bytes.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        self.get().map(str::as_bytes)
    }

    pub(crate) fn get(&self) -> Option<&str> {
        (!self.text.is_empty()).then_some(self.text.as_str())
    }
}
