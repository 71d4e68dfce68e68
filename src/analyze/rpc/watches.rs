//! Which watch a message of a Watch stream is about. One stream carries many watches,
//! told apart by watch id: a create request names its key range, etcd acknowledges the
//! creates in order (a response with `created`, carrying the id it chose), and from then
//! on events, cancel requests and the `canceled` acknowledgement name the id only.

use std::collections::{HashMap, VecDeque};

use crate::decode::etcdpb::{watch_request::RequestUnion, WatchRequest, WatchResponse};

/// Watches followed per stream (created or waiting to be); more are not named.
const MAX_WATCHES: usize = 4096;

/// A watch's key and range end.
pub type KeyRange = (Vec<u8>, Vec<u8>);

/// The watches of one Watch stream, by id.
#[derive(Debug, Default)]
pub struct WatchKeys {
    /// Create requests not yet acknowledged, oldest first.
    pending: VecDeque<KeyRange>,
    /// Created watches not yet cancelled.
    live: HashMap<i64, KeyRange>,
}

impl WatchKeys {
    /// The key range a request is about: a create's own, a cancel's watch's; None for
    /// a progress request or a watch never seen created.
    pub fn on_request(&mut self, req: &WatchRequest) -> Option<KeyRange> {
        match req.request_union.as_ref()? {
            RequestUnion::CreateRequest(c) => {
                let range = (c.key.clone(), c.range_end.clone());
                if self.pending.len() + self.live.len() < MAX_WATCHES {
                    self.pending.push_back(range.clone());
                }
                Some(range)
            }
            RequestUnion::CancelRequest(c) => self.live.get(&c.watch_id).cloned(),
            RequestUnion::ProgressRequest(_) => None,
        }
    }

    /// The key range of the watch a response is for; a `created` response pairs the
    /// oldest pending create with its id, a `canceled` one ends the watch.
    pub fn on_response(&mut self, resp: &WatchResponse) -> Option<KeyRange> {
        let range = if resp.created {
            let range = self.pending.pop_front()?;
            if !resp.canceled {
                self.live.insert(resp.watch_id, range.clone());
            }
            Some(range)
        } else {
            self.live.get(&resp.watch_id).cloned()
        };
        if resp.canceled {
            self.live.remove(&resp.watch_id);
        }
        range
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::etcdpb::{WatchCancelRequest, WatchCreateRequest, WatchProgressRequest};

    fn create(key: &[u8], end: &[u8]) -> WatchRequest {
        WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.to_vec(),
                range_end: end.to_vec(),
                ..Default::default()
            })),
        }
    }

    fn cancel(watch_id: i64) -> WatchRequest {
        WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })),
        }
    }

    fn response(watch_id: i64, created: bool, canceled: bool) -> WatchResponse {
        WatchResponse {
            watch_id,
            created,
            canceled,
            ..Default::default()
        }
    }

    fn range(key: &[u8], end: &[u8]) -> Option<KeyRange> {
        Some((key.to_vec(), end.to_vec()))
    }

    /// A message of the stream, in order.
    enum Step {
        Request(WatchRequest),
        Response(WatchResponse),
    }

    #[test]
    fn two_watches_on_one_stream_created_and_cancelled() {
        use Step::{Request as Req, Response as Resp};
        let (a, b) = (range(b"/a/", b"/a0"), range(b"/b/", b"/b0"));
        let steps = [
            (Req(create(b"/a/", b"/a0")), &a),
            (Req(create(b"/b/", b"/b0")), &b),
            // Acknowledged in order, with the ids etcd chose (the first is 0).
            (Resp(response(0, true, false)), &a),
            (Resp(response(1, true, false)), &b),
            (Resp(response(1, false, false)), &b),
            (Resp(response(0, false, false)), &a),
            (Req(cancel(1)), &b),
            (Resp(response(1, false, true)), &b),
            // Watch 1 is gone; watch 0 still named.
            (Req(cancel(1)), &None),
            (Resp(response(1, false, false)), &None),
            (Req(cancel(0)), &a),
            (Resp(response(0, false, true)), &a),
            (Resp(response(0, false, false)), &None),
        ];
        let mut w = WatchKeys::default();
        for (i, (step, want)) in steps.into_iter().enumerate() {
            let got = match step {
                Req(r) => w.on_request(&r),
                Resp(r) => w.on_response(&r),
            };
            assert_eq!(&got, want, "step {i}");
        }
    }

    #[test]
    fn unknown_watches_and_progress_are_not_named() {
        let mut w = WatchKeys::default();
        // Watches created before recording began.
        assert_eq!(w.on_response(&response(5, false, false)), None);
        assert_eq!(w.on_request(&cancel(5)), None);
        assert_eq!(w.on_response(&response(5, true, false)), None);
        let progress = WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        };
        assert_eq!(w.on_request(&progress), None);
        assert_eq!(w.on_request(&WatchRequest::default()), None);
        // A create etcd refused (created and canceled at once) names its range, no id.
        w.on_request(&create(b"k", b""));
        assert_eq!(w.on_response(&response(-1, true, true)), range(b"k", b""));
        assert_eq!(w.on_response(&response(-1, false, false)), None);
    }
}
