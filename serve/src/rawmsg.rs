//! A received ZeroMQ message part with the one property the `zmq` crate does not expose:
//! the file descriptor of the connection it came from (`ZMQ_SRCFD`), which the bridge
//! matches against the socket monitor's disconnect events.

use std::os::raw::{c_int, c_void};

/// `ZMQ_SRCFD` of zmq.h: deprecated there (and so not exported by zmq-sys), still answered by
/// every libzmq 4.x.
const ZMQ_SRCFD: c_int = 2;

/// An initialised `zmq_msg_t`, closed on drop. Not moved after a receive (the C API keeps
/// small messages inline).
pub struct RawMsg(zmq_sys::zmq_msg_t);

impl RawMsg {
    pub fn new() -> Self {
        let mut m = std::mem::MaybeUninit::<zmq_sys::zmq_msg_t>::uninit();
        // SAFETY: zmq_msg_init initialises the struct it is given and cannot fail.
        unsafe {
            zmq_sys::zmq_msg_init(m.as_mut_ptr());
            RawMsg(m.assume_init())
        }
    }

    /// Receives the next part from `socket` (a raw socket of this thread), replacing the
    /// content.
    pub fn recv(&mut self, socket: *mut c_void, flags: i32) -> Result<(), zmq::Error> {
        // SAFETY: the message is initialised; the socket pointer comes from a live
        // `zmq::Socket` used only by the calling thread.
        let rc = unsafe { zmq_sys::zmq_msg_recv(&mut self.0, socket, flags as c_int) };
        if rc < 0 {
            // SAFETY: reads the thread's last ZeroMQ error.
            return Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }));
        }
        Ok(())
    }

    pub fn data(&mut self) -> &[u8] {
        // SAFETY: data and size describe the message's buffer, valid while `self` is.
        unsafe {
            let size = zmq_sys::zmq_msg_size(&self.0);
            if size == 0 {
                return &[];
            }
            std::slice::from_raw_parts(zmq_sys::zmq_msg_data(&mut self.0) as *const u8, size)
        }
    }

    pub fn more(&self) -> bool {
        // SAFETY: reads a property of an initialised message.
        unsafe { zmq_sys::zmq_msg_more(&self.0) != 0 }
    }

    /// The descriptor of the connection the message arrived on, when the transport has one.
    pub fn source_fd(&self) -> Option<i32> {
        // SAFETY: reads a property of an initialised message.
        let fd = unsafe { zmq_sys::zmq_msg_get(&self.0, ZMQ_SRCFD) };
        (fd >= 0).then_some(fd)
    }
}

impl Default for RawMsg {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RawMsg {
    fn drop(&mut self) {
        // SAFETY: closes the message initialised in `new`.
        unsafe {
            zmq_sys::zmq_msg_close(&mut self.0);
        }
    }
}
