//! Shared queues as cpp-host keeps them: identity (vm_id, name), ids from a process-wide
//! counter starting at 1, and one registrant per queue (the last to register) whose root
//! context gets `proxy_on_queue_ready` on its own VM after each enqueue, as a posted event.

use super::{guard, memory, HostResult, Status};
use crate::events::{Mailbox, Posted};
use crate::state::VmState;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, Weak};
use wasmtime::{Caller, Linker};

/// Who hears about a queue: a VM's mailbox (weak: a dropped VM hears nothing) and its root.
#[derive(Debug, Clone)]
struct Registrant {
    mailbox: Weak<Mutex<VecDeque<Posted>>>,
    root: u32,
}

/// Shared queues of one host process.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    ids: HashMap<(String, Vec<u8>), u32>,
    data: HashMap<u32, VecDeque<Vec<u8>>>,
    registrants: HashMap<u32, Registrant>,
    next: u32,
}

impl Queues {
    /// Creates or reopens (vm_id, name) and makes `(mailbox, root)` its only registrant.
    fn register(&mut self, vm_id: String, name: Vec<u8>, mailbox: &Mailbox, root: u32) -> u32 {
        let id = match self.ids.get(&(vm_id.clone(), name.clone())) {
            Some(id) => *id,
            None => {
                self.next = self.next.wrapping_add(1).max(1);
                let id = self.next;
                self.ids.insert((vm_id, name), id);
                self.data.insert(id, VecDeque::new());
                id
            }
        };
        let mailbox = std::sync::Arc::downgrade(mailbox);
        self.registrants.insert(id, Registrant { mailbox, root });
        id
    }

    /// Appends `value` and posts `on_queue_ready` to the registrant; false for an unknown id.
    fn enqueue(&mut self, id: u32, value: Vec<u8>) -> bool {
        let Some(queue) = self.data.get_mut(&id) else {
            return false;
        };
        queue.push_back(value);
        if let Some(r) = self.registrants.get(&id) {
            if let Some(mailbox) = r.mailbox.upgrade() {
                mailbox
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_back(Posted::QueueReady {
                        root: r.root,
                        queue: id,
                    });
            }
        }
        true
    }
}

fn status(s: Status) -> HostResult {
    Ok(s.code())
}

fn with_queues<R>(c: &Caller<'_, VmState>, f: impl FnOnce(&mut Queues) -> R) -> R {
    let shared = c.data().shared.clone();
    let mut q = shared
        .queues
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut q)
}

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: Caller<'_, VmState>, np: i32, nl: i32, ret: i32| -> HostResult {
            guard(&c, "proxy_register_shared_queue")?;
            let Ok(name) = memory::read(&c, np, nl) else {
                return status(Status::InvalidMemoryAccess);
            };
            let st = c.data();
            let vm_id = st.shared.settings.vm_id.clone();
            // A stream context registers on behalf of its root (onQueueReady is a root callback).
            let (mailbox, root) = (st.mailbox.clone(), st.effective_root());
            let id = with_queues(&c, |q| q.register(vm_id, name, &mailbox, root));
            if memory::write_u32(&mut c, ret, id).is_err() {
                return status(Status::InvalidMemoryAccess);
            }
            status(Status::Ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: Caller<'_, VmState>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| -> HostResult {
            guard(&c, "proxy_resolve_shared_queue")?;
            let (Ok(vm), Ok(name)) = (memory::read(&c, vp, vl), memory::read(&c, np, nl)) else {
                return status(Status::InvalidMemoryAccess);
            };
            let mut vm_id = String::from_utf8_lossy(&vm).into_owned();
            if vm_id.is_empty() {
                vm_id = c.data().shared.settings.vm_id.clone();
            }
            let Some(id) = with_queues(&c, |q| q.ids.get(&(vm_id, name)).copied()) else {
                return status(Status::NotFound);
            };
            if memory::write_u32(&mut c, ret, id).is_err() {
                return status(Status::InvalidMemoryAccess);
            }
            status(Status::Ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |c: Caller<'_, VmState>, id: i32, vp: i32, vl: i32| -> HostResult {
            guard(&c, "proxy_enqueue_shared_queue")?;
            let Ok(v) = memory::read(&c, vp, vl) else {
                return status(Status::InvalidMemoryAccess);
            };
            let ok = with_queues(&c, |q| q.enqueue(id as u32, v));
            status(if ok { Status::Ok } else { Status::NotFound })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: Caller<'_, VmState>, id: i32, rp: i32, rl: i32| -> HostResult {
            guard(&c, "proxy_dequeue_shared_queue")?;
            let item = with_queues(&c, |q| {
                q.data.get_mut(&(id as u32)).map(VecDeque::pop_front)
            });
            match item {
                None => status(Status::NotFound),
                Some(None) => status(Status::Empty),
                Some(Some(v)) => Ok(memory::copy_out(&mut c, &v, rp, rl)?.code()),
            }
        },
    )?;
    Ok(())
}
