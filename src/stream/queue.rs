//! The bounded hand-over between the capture thread and the pipeline. Live sources never wait: when the queue
//! is full the **oldest** frame is dropped (a stale frame is worth less than a fresh one) and counted. Replay
//! sources wait for room, so every recorded frame is processed in order.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    dropped: u64,
}

#[derive(Debug)]
pub struct FrameQueue<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    capacity: usize,
}

impl<T> FrameQueue<T> {
    pub fn new(capacity: usize) -> Self {
        FrameQueue {
            state: Mutex::new(State { items: VecDeque::with_capacity(capacity.max(1)), closed: false, dropped: 0 }),
            changed: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // a panicking holder cannot leave the queue inconsistent (every update is one push or pop)
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Live: never blocks; drops the oldest queued item when full. Returns false once the queue is closed.
    pub fn push_latest(&self, item: T) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        if s.items.len() >= self.capacity {
            s.items.pop_front();
            s.dropped += 1;
        }
        s.items.push_back(item);
        self.changed.notify_all();
        true
    }

    /// Replay: waits for room. Returns false (and drops the item) once the queue is closed.
    pub fn push_wait(&self, item: T) -> bool {
        let mut s = self.lock();
        while s.items.len() >= self.capacity && !s.closed {
            s = self.changed.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if s.closed {
            return false;
        }
        s.items.push_back(item);
        self.changed.notify_all();
        true
    }

    /// The next item; None when the queue is closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut s = self.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                self.changed.notify_all();
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s = self.changed.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// No more pushes; pops drain what is queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn live_mode_drops_the_oldest_and_counts() {
        let q = FrameQueue::new(2);
        for i in 0..5 {
            assert!(q.push_latest(i));
        }
        assert_eq!(q.dropped(), 3);
        q.close();
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(3), Some(4), None));
    }

    #[test]
    fn replay_mode_waits_and_keeps_every_item_in_order() {
        let q = Arc::new(FrameQueue::new(1));
        let producer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                for i in 0..100 {
                    assert!(q.push_wait(i));
                }
                q.close();
            })
        };
        let got: Vec<i32> = std::iter::from_fn(|| q.pop()).collect();
        producer.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn closing_wakes_a_waiting_producer() {
        let q = Arc::new(FrameQueue::new(1));
        assert!(q.push_wait(1));
        let producer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.push_wait(2))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        q.close();
        assert!(!producer.join().unwrap());
    }
}
