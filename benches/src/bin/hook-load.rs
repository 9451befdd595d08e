//! `hook-load`: a closed-loop HTTP/1.1 keep-alive load generator for the HTTP hook listener
//! (HOOKS.md 2), used by `benches/hooks.sh`. N connections each send the same request back to
//! back for S seconds; it prints one JSON line: answered requests, rate, and answers that did
//! not contain the expected text (counted, never hidden).
//!
//! hook-load ADDR PATH [--body JSON] [--header "K: V"]... [--connections N] [--seconds S]
//!                     [--expect TEXT]
//!
//! A request with a body is a POST, else a GET. Loopback only (ADDR is 127.x.x.x:PORT).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    request: Vec<u8>,
    connections: usize,
    seconds: f64,
    expect: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: hook-load ADDR PATH [--body JSON] [--header 'K: V']... [--connections N] \
         [--seconds S] [--expect TEXT]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1);
    let addr: SocketAddr = it
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage());
    if !addr.ip().is_loopback() {
        eprintln!("hook-load: loopback addresses only");
        std::process::exit(2);
    }
    let path = it.next().unwrap_or_else(|| usage());
    let (mut body, mut headers) = (None::<String>, Vec::new());
    let (mut connections, mut seconds, mut expect) = (16, 5.0, String::new());
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--body" => body = Some(value),
            "--header" => headers.push(value),
            "--connections" => connections = value.parse().unwrap_or_else(|_| usage()),
            "--seconds" => seconds = value.parse().unwrap_or_else(|_| usage()),
            "--expect" => expect = value,
            _ => usage(),
        }
    }
    let method = if body.is_some() { "POST" } else { "GET" };
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in &headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    if let Some(b) = &body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    Args {
        addr,
        request: request.into_bytes(),
        connections,
        seconds,
        expect,
    }
}

/// Reads one response; returns whether its body contains `expect`.
fn response(reader: &mut BufReader<TcpStream>, expect: &str) -> std::io::Result<bool> {
    let mut line = String::new();
    let mut length = 0usize;
    reader.read_line(&mut line)?;
    let ok_status = line.split(' ').nth(1).is_some_and(|c| c.starts_with('2'));
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(ok_status && String::from_utf8_lossy(&body).contains(expect))
}

fn main() {
    let args = Arc::new(parse());
    let stop = Arc::new(AtomicBool::new(false));
    let (done, unexpected) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (args, stop) = (args.clone(), stop.clone());
            let (done, unexpected) = (done.clone(), unexpected.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                let stream = TcpStream::connect(args.addr)?;
                stream.set_nodelay(true)?;
                let mut writer = stream.try_clone()?;
                let mut reader = BufReader::new(stream);
                while !stop.load(Ordering::Relaxed) {
                    writer.write_all(&args.request)?;
                    let counter = if response(&mut reader, &args.expect)? {
                        &done
                    } else {
                        &unexpected
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let failed = workers
        .into_iter()
        .map(|w| w.join().map_or(true, |r| r.is_err()))
        .filter(|f| *f)
        .count();
    let requests = done.load(Ordering::Relaxed);
    println!(
        "{{\"requests\": {requests}, \"per_second\": {:.0}, \"unexpected\": {}, \"failed_connections\": {failed}, \"seconds\": {elapsed:.2}}}",
        requests as f64 / elapsed,
        unexpected.load(Ordering::Relaxed)
    );
}
