//! Criterion benchmarks of the plugin boundary (the `boundary` scenario of `murmur bench`,
//! with criterion's statistics): a call through the plugin ABI against the same analyzer
//! compiled into the host, a whole run, and draining the inject queue.
//!
//! ```text
//! cargo bench -p murmur --bench boundary
//! ```

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use murmur::bench::boundary::{full_queue, Fixture};
use murmur::session::queue::Lane;

fn boundary(c: &mut Criterion) {
    let fixture = murmur::bench::build_fixture()
        .and_then(|dir| murmur::bench::fixture_library(Some(&dir)))
        .and_then(|library| Fixture::new(&library));
    let fixture = match fixture {
        Ok(f) => f,
        Err(e) => {
            eprintln!("boundary: {e:#}");
            std::process::exit(1);
        }
    };
    let mut group = c.benchmark_group("analyze, 20-message context");
    group.bench_function("plugin ABI, early return", |b| {
        b.iter(|| fixture.abi(false, &fixture.long))
    });
    group.bench_function("native, early return", |b| {
        b.iter(|| fixture.native(false, &fixture.long))
    });
    group.bench_function("plugin ABI, one note", |b| {
        b.iter(|| fixture.abi(true, &fixture.long))
    });
    group.bench_function("native, one note", |b| {
        b.iter(|| fixture.native(true, &fixture.long))
    });
    group.finish();

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    c.bench_function("whole run, one note, 20-message context", |b| {
        b.iter(|| tokio.block_on(fixture.run(&fixture.long)))
    });
    c.bench_function("drain 100 queued notes", |b| {
        b.iter_batched(
            || full_queue(100),
            |mut queue| queue.drain(Lane::Instructions),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, boundary);
criterion_main!(benches);
