//! The module's global allocator: small blocks are recycled through per-size free lists in
//! front of the standard allocator (dlmalloc on wasm32-wasip1).
//!
//! A request allocates a few dozen small blocks (header values the host hands over, the
//! records read from shared data, short strings and vectors) and frees them by its end.
//! dlmalloc spends a few hundred instructions per malloc/free pair; popping and pushing a
//! free list costs a few dozen. Blocks of up to [`MAX_SMALL`] bytes are rounded up to a
//! size of the form 8k + 4 (12, 20, 28, …): dlmalloc adds a 4-byte header and rounds to
//! 8 (or 16), so such a block takes the same chunk as the exact request would and the
//! rounding costs no memory. Each size keeps at most [`KEEP`] free blocks (about 70 KiB in
//! all); the rest go back to dlmalloc, so the lists hold a bounded amount. Larger or
//! over-aligned blocks go straight to dlmalloc, `realloc` included.
//!
//! The module has one thread (wasm32-wasip1 without threads), so the lists need no lock.
//! The glue installs it as the module's global allocator; native builds only test it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Number of size classes: blocks of 12, 20, 28, … 260 bytes.
const CLASSES: usize = 32;
/// The largest block served from the free lists.
pub const MAX_SMALL: usize = 8 * (CLASSES - 1) + 12;
/// Alignment of every small block (dlmalloc gives at least this; enough for a list link).
const ALIGN: usize = 8;
/// Free blocks kept per size class.
pub const KEEP: u32 = 32;

struct Lists {
    /// First free block of each class; each free block starts with the next one's address.
    heads: [*mut u8; CLASSES],
    counts: [u32; CLASSES],
}

pub struct Recycler {
    lists: UnsafeCell<Lists>,
}

// SAFETY: the module runs on one thread (wasm32-wasip1 has no threads), so the lists are
// never touched concurrently. (Native tests use an instance from one thread only.)
unsafe impl Sync for Recycler {}

impl Recycler {
    pub const fn new() -> Self {
        Self {
            lists: UnsafeCell::new(Lists {
                heads: [ptr::null_mut(); CLASSES],
                counts: [0; CLASSES],
            }),
        }
    }
}

impl Default for Recycler {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class of a block, if it is small and not over-aligned: the smallest class
/// whose size (8 × class + 12) holds it.
fn class_of(size: usize, align: usize) -> Option<usize> {
    if size == 0 || size > MAX_SMALL || align > ALIGN {
        return None;
    }
    Some(size.saturating_sub(5) / 8)
}

/// The layout every block of `class` is allocated with from dlmalloc.
fn class_layout(class: usize) -> Option<Layout> {
    let size = class.checked_mul(8)?.checked_add(12)?;
    Layout::from_size_align(size, ALIGN).ok()
}

unsafe impl GlobalAlloc for Recycler {
    // Not inlined: inlining both paths into every allocation site costs ~26 KB of code for
    // a few hundred fuel per request (measured).
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout.size(), layout.align()) else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single thread, and no other reference to the lists is alive (the
        // allocator is not re-entered while this one runs).
        let lists = unsafe { &mut *self.lists.get() };
        if let (Some(head), Some(count)) = (lists.heads.get_mut(class), lists.counts.get_mut(class))
        {
            let block = *head;
            if !block.is_null() {
                // SAFETY: a free block of this class starts with the next free block's
                // address, written by `dealloc`; it is ALIGN-aligned, enough for a pointer.
                *head = unsafe { block.cast::<*mut u8>().read() };
                *count = count.saturating_sub(1);
                return block;
            }
        }
        match class_layout(class) {
            // SAFETY: a non-zero size and a valid alignment.
            Some(class_layout) => unsafe { System.alloc(class_layout) },
            None => ptr::null_mut(),
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout.size(), layout.align()) else {
            // SAFETY: a large block came from `System.alloc(layout)` (or its realloc).
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: as in `alloc`.
        let lists = unsafe { &mut *self.lists.get() };
        if let (Some(head), Some(count)) = (lists.heads.get_mut(class), lists.counts.get_mut(class))
        {
            if *count < KEEP {
                // SAFETY: the block is at least 12 bytes, ALIGN-aligned, and no
                // longer used by its owner: its first bytes can hold the list link.
                unsafe { block.cast::<*mut u8>().write(*head) };
                *head = block;
                *count = count.saturating_add(1);
                return;
            }
        }
        if let Some(class_layout) = class_layout(class) {
            // SAFETY: every block of this class was allocated with `class_layout`.
            unsafe { System.dealloc(block, class_layout) };
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class_of(layout.size(), layout.align()).is_none() {
            // SAFETY: forwarded with the caller's guarantees (dlmalloc knows fresh memory
            // is already zero).
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: forwarded with the caller's guarantees.
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            // SAFETY: the block is valid for `layout.size()` bytes.
            unsafe { ptr::write_bytes(block, 0, layout.size()) };
        }
        block
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_class = class_of(layout.size(), layout.align());
        let new_class = class_of(new_size, layout.align());
        match (old_class, new_class) {
            // SAFETY: a large block from `System.alloc(layout)`, staying large.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            // The block already has room for the new size.
            (Some(old), Some(new)) if old == new => block,
            _ => {
                let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
                    return ptr::null_mut();
                };
                // SAFETY: the caller guarantees a non-zero `new_size`.
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks are valid for the smaller size and distinct.
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_hold_their_sizes_without_waste() {
        for size in 1..=MAX_SMALL {
            let class = class_of(size, 1).unwrap();
            let room = class_layout(class).unwrap().size();
            assert!(room >= size, "{size}");
            // The next smaller class would not hold it, and every class size is 8k + 4.
            if class > 0 {
                assert!(class_layout(class - 1).unwrap().size() < size, "{size}");
            }
            assert_eq!(room % 8, 4, "{size}");
        }
        assert_eq!(class_of(MAX_SMALL + 1, 1), None);
        assert_eq!(class_of(16, 16), None);
        assert_eq!(class_of(0, 1), None);
    }

    #[test]
    fn blocks_are_recycled_bounded_and_keep_their_contents() {
        let recycler = Recycler::new();
        let small = Layout::from_size_align(24, 8).unwrap();
        unsafe {
            let blocks: Vec<*mut u8> = (0..100).map(|_| recycler.alloc(small)).collect();
            for (i, &b) in blocks.iter().enumerate() {
                assert!(!b.is_null());
                ptr::write_bytes(b, u8::try_from(i).unwrap(), 24);
            }
            for (i, &b) in blocks.iter().enumerate() {
                assert!(
                    (0..24).all(|k| *b.add(k) == u8::try_from(i).unwrap()),
                    "block {i} overwritten"
                );
            }
            for &b in &blocks {
                recycler.dealloc(b, small);
            }
            let lists = &*recycler.lists.get();
            let class = class_of(24, 8).unwrap();
            assert_eq!(lists.counts[class], KEEP);
            // The last blocks freed come back first.
            let again = recycler.alloc(Layout::from_size_align(28, 4).unwrap());
            assert_eq!(again, blocks[KEEP as usize - 1]);
            recycler.dealloc(again, Layout::from_size_align(28, 4).unwrap());

            // Growing and shrinking across classes and through dlmalloc keeps the contents.
            let mut b = recycler.alloc(small);
            ptr::write_bytes(b, 7, 24);
            let mut size = 24;
            for new_size in [28, 260, 261, 4096, 100, 12] {
                let current = Layout::from_size_align(size, 8).unwrap();
                b = recycler.realloc(b, current, new_size);
                assert!(!b.is_null());
                assert!(
                    (0..12).all(|k| *b.add(k) == 7),
                    "after realloc to {new_size}"
                );
                size = new_size;
            }
            recycler.dealloc(b, Layout::from_size_align(12, 8).unwrap());
            let zeroed = recycler.alloc_zeroed(Layout::from_size_align(40, 8).unwrap());
            assert!((0..40).all(|k| *zeroed.add(k) == 0));
            recycler.dealloc(zeroed, Layout::from_size_align(40, 8).unwrap());
        }
    }
}
