//! The client against a fake QEMU: a thread on the other end of a Unix socket pair that
//! sends what a test scripts, byte for byte, and records what the client asked.

use super::*;
use std::thread::JoinHandle;

/// The QEMU end of the pair.
struct FakeQemu {
    stream: UnixStream,
    partial: Vec<u8>,
}

impl FakeQemu {
    /// Sends raw bytes (whole lines, parts of lines, several lines at once).
    fn send(&mut self, raw: &str) {
        self.stream.write_all(raw.as_bytes()).unwrap();
    }

    /// The next request the client sent.
    fn request(&mut self) -> Value {
        self.next_request().expect("the client hung up")
    }

    /// The next request, or `None` when the client has hung up.
    fn next_request(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let mut buf = [0u8; 1024];
            let n = self.stream.read(&mut buf).unwrap();
            if n == 0 {
                return None;
            }
            self.partial.extend_from_slice(&buf[..n]);
        }
    }

    /// Answers the next request with `{"return": value}` and its id; returns the request.
    fn answer(&mut self, value: Value) -> Value {
        let request = self.request();
        let reply = json!({ "return": value, "id": request["id"] });
        self.send(&format!("{reply}\r\n"));
        request
    }

    /// The greeting and the answer to `qmp_capabilities`.
    fn handshake(&mut self) {
        self.send(r#"{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": ["oob"]}}"#);
        self.send("\r\n");
        let request = self.answer(json!({}));
        assert_eq!(request["execute"], "qmp_capabilities");
    }
}

/// A client connected to a fake QEMU running `script`; the script's result comes back
/// through the handle.
fn fake<T: Send + 'static>(
    script: impl FnOnce(&mut FakeQemu) -> T + Send + 'static,
) -> (UnixStream, JoinHandle<T>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let handle = std::thread::spawn(move || {
        let mut qemu = FakeQemu {
            stream: theirs,
            partial: Vec::new(),
        };
        script(&mut qemu)
    });
    (ours, handle)
}

/// A client after the handshake with a fake QEMU that answers every request with
/// `{"return": {}}` and hands back the requests it saw (without `id`).
fn recording() -> (Qmp, JoinHandle<Vec<Value>>) {
    let (stream, handle) = fake(|q| {
        q.handshake();
        let mut seen = Vec::new();
        while let Some(mut request) = q.next_request() {
            let reply = json!({ "return": {}, "id": request["id"] });
            q.send(&format!("{reply}\n"));
            request.as_object_mut().unwrap().remove("id");
            seen.push(request);
        }
        seen
    });
    (Qmp::start(stream).unwrap(), handle)
}

#[test]
fn matches_replies_by_id_past_events_and_late_replies() {
    let (stream, server) = fake(|q| {
        q.handshake();
        let request = q.request();
        assert_eq!(request["execute"], "query-status");
        let id = request["id"].as_u64().unwrap();
        // A late reply to an older command, an event, then the answer split in pieces
        // and followed at once by another event.
        q.send(&format!(
            "{{\"return\": {{\"late\": true}}, \"id\": {}}}\r\n",
            id - 1
        ));
        q.send("{\"event\": \"RESUME\", \"timestamp\": {}}\r\n");
        q.send("{\"return\": {\"status\": \"runn");
        std::thread::sleep(Duration::from_millis(20));
        q.send(&format!(
            "ing\"}}, \"id\": {id}}}\r\n{{\"event\": \"STOP\"}}\r\n"
        ));
        let next = q.answer(json!(42));
        assert_eq!(next["execute"], "query-name");
    });
    let mut qmp = Qmp::start(stream).unwrap();
    let status = qmp.execute("query-status", json!({})).unwrap();
    assert_eq!(status, json!({ "status": "running" }));
    assert_eq!(qmp.execute("query-name", json!({})).unwrap(), json!(42));
    let events: Vec<&str> = qmp
        .events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["RESUME", "STOP"]);
    server.join().unwrap();
}

#[test]
fn reports_qemus_error_description() {
    let (stream, server) = fake(|q| {
        q.handshake();
        let request = q.request();
        q.send(&format!(
            "{{\"id\": {}, \"error\": {{\"class\": \"GenericError\", \"desc\": \
             \"Input handler not found for event type abs\"}}}}\r\n",
            request["id"]
        ));
        // QEMU refusing a request it could not even read: no id.
        q.request();
        q.send("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n");
    });
    let mut qmp = Qmp::start(stream).unwrap();
    let message = qmp.move_abs(1, 1, (640, 480)).unwrap_err().to_string();
    assert_eq!(
        message,
        "QEMU refused input-send-event: Input handler not found for event type abs (GenericError)"
    );
    let message = qmp.execute("stop", json!({})).unwrap_err().to_string();
    assert!(message.contains("JSON parse error"), "{message}");
    server.join().unwrap();
}

#[test]
fn fails_cleanly_on_a_broken_peer() {
    /// What the fake QEMU does, and what the client's error must say.
    type Case = (&'static str, fn(&mut FakeQemu), &'static str);
    let cases: Vec<Case> = vec![
        (
            "no greeting",
            |q| q.send("{\"return\": {}}\n"),
            "QMP greeting expected",
        ),
        ("not JSON", |q| q.send("Welcome\n"), "not JSON"),
        (
            "hangs up",
            |q| {
                q.send("{\"QMP\": {}}\n");
                q.request();
            },
            "closed the QMP connection",
        ),
        (
            "foreign reply",
            |q| {
                q.send("{\"QMP\": {}}\n");
                q.request();
                q.send("{\"return\": {}, \"id\": 99}\n");
            },
            "a reply that is not to it",
        ),
    ];
    for (what, script, reason) in cases {
        let (stream, server) = fake(script);
        let message = format!("{:#}", Qmp::start(stream).err().unwrap());
        assert!(message.contains(reason), "{what}: {message}");
        server.join().unwrap();
    }
}

#[test]
fn gives_up_after_its_timeout() {
    let (stream, server) = fake(|q| {
        q.handshake();
        q.request();
        // Never answer; wait for the client to hang up.
        let mut buf = [0u8; 16];
        while q.stream.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let mut qmp = Qmp::start(stream).unwrap();
    qmp.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let message = format!("{:#}", qmp.execute("query-status", json!({})).unwrap_err());
    assert!(message.contains("no reply from QMP in 200ms"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(qmp);
    server.join().unwrap();
}

#[test]
fn sends_keys_text_and_pointer_events() {
    let (mut qmp, server) = recording();
    qmp.send_key(&["ctrl", "shift", "c"]).unwrap();
    qmp.type_text("A\n").unwrap();
    assert!(qmp.type_text("é").is_err());
    assert!(qmp.send_key(&[]).is_err());
    qmp.move_rel(5, -3).unwrap();
    qmp.click(Button::Right).unwrap();
    qmp.move_abs(639, 0, (640, 480)).unwrap();
    drop(qmp);
    let seen = server.join().unwrap();
    let qcodes = |names: &[&str]| {
        let keys: Vec<Value> = names
            .iter()
            .map(|n| json!({"type": "qcode", "data": n}))
            .collect();
        json!({ "execute": "send-key", "arguments": { "keys": keys } })
    };
    let input =
        |events: Value| json!({ "execute": "input-send-event", "arguments": { "events": events } });
    let button =
        |down| input(json!([{ "type": "btn", "data": { "down": down, "button": "right" } }]));
    assert_eq!(
        seen,
        [
            qcodes(&["ctrl", "shift", "c"]),
            qcodes(&["shift", "a"]),
            qcodes(&["ret"]),
            input(json!([
                { "type": "rel", "data": { "axis": "x", "value": 5 } },
                { "type": "rel", "data": { "axis": "y", "value": -3 } },
            ])),
            button(true),
            button(false),
            input(json!([
                { "type": "abs", "data": { "axis": "x", "value": ABS_MAX } },
                { "type": "abs", "data": { "axis": "y", "value": 0 } },
            ])),
        ]
    );
}

#[test]
fn screendump_reads_the_file_qemu_wrote() {
    let dir = std::env::temp_dir().join(format!("xtask-qmp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (stream, server) = fake(|q| {
        q.handshake();
        for contents in [
            Image::filled(4, 3, [9, 8, 7]).to_ppm(),
            b"P6\n4 3\n255\n".to_vec(),
        ] {
            let request = q.request();
            assert_eq!(request["execute"], "screendump");
            let path = request["arguments"]["filename"].as_str().unwrap();
            assert!(Path::new(path).is_absolute(), "{path}");
            std::fs::write(path, contents).unwrap();
            q.send(&format!(
                "{{\"return\": {{}}, \"id\": {}}}\n",
                request["id"]
            ));
        }
    });
    let mut qmp = Qmp::start(stream).unwrap();
    let image = qmp.screendump(&dir.join("good.ppm")).unwrap();
    assert_eq!(image, Image::filled(4, 3, [9, 8, 7]));
    let message = format!("{:#}", qmp.screendump(&dir.join("bad.ppm")).unwrap_err());
    assert!(
        message.contains("truncated PPM: 0 of the 36 sample bytes"),
        "{message}"
    );
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
