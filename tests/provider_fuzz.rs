//! Fuzz smoke run of every metadata parser: the fixture documents, mutated (bit flips, byte
//! insertions and deletions, truncation, splices) and random bytes. A parser may reject input;
//! it must never panic. Std-only, so it runs on stable in CI; `FUZZ_ITERATIONS=N` runs longer
//! and `FUZZ_SEED=N` replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use nixos_lift::provider::parse;

type Parser = fn(&[u8]);

fn targets() -> Vec<(&'static str, &'static str, Parser)> {
    vec![
        ("azure", "azure/metadata/instance", |b| {
            drop(parse::azure(b))
        }),
        ("digitalocean", "digitalocean/metadata/v1.json", |b| {
            drop(parse::digitalocean(b))
        }),
        ("hetzner", "hetzner/hetzner/v1/metadata", |b| {
            drop(parse::hetzner(b))
        }),
        ("vultr", "vultr/v1.json", |b| drop(parse::vultr(b))),
        ("upcloud", "upcloud/metadata/v1.json", |b| {
            drop(parse::upcloud(b))
        }),
        ("scaleway", "scaleway/conf", |b| drop(parse::scaleway(b))),
        ("akamai_instance", "akamai/v1/instance", |b| {
            drop(parse::akamai_instance(b))
        }),
        ("akamai_network", "akamai/v1/network", |b| {
            drop(parse::akamai_network(b))
        }),
        ("oracle_instance", "oracle/opc/v2/instance/_body", |b| {
            drop(parse::oracle_instance(b))
        }),
        ("oracle_vnics", "oracle/opc/v2/vnics/_body", |b| {
            drop(parse::oracle_vnics(b))
        }),
        (
            "openstack_meta_data",
            "openstack/openstack/latest/meta_data.json",
            |b| drop(parse::openstack_meta_data(b)),
        ),
        (
            "openstack_network_data",
            "openstack/openstack/latest/network_data.json",
            |b| drop(parse::openstack_network_data(b)),
        ),
        ("nocloud_meta_data", "nocloud/meta-data", |b| {
            drop(parse::nocloud_meta_data(b))
        }),
        ("network_config", "nocloud/network-config", |b| {
            drop(parse::network_config(b))
        }),
        (
            "ec2_listing",
            "aws/latest/meta-data/public-keys/_index",
            |b| drop(parse::ec2_listing(b)),
        ),
        (
            "gcp_ssh_keys",
            "gcp/computeMetadata/v1/instance/attributes/ssh-keys",
            |b| drop(parse::gcp_ssh_keys(b)),
        ),
        ("nocloud_line_config", "nocloud/meta-data", |b| {
            drop(parse::nocloud_line_config(&String::from_utf8_lossy(b)))
        }),
    ]
}

/// xorshift64*: deterministic, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"-1",
    b"1e999",
    b"\n- ",
    b": ",
    b"&a",
    b"*a",
    b"!!binary",
    b"\xff",
    b"\x00",
    b"::",
    b"/",
    b"999999999999999999999999",
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let tok = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, tok.iter().copied());
            }
            2 if at < data.len() => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => data.truncate(at),
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let len = rng.below(other.len() - from + 1);
                data.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => data.insert(at.min(data.len()), rng.next() as u8),
        }
    }
    data
}

#[test]
fn parsers_never_panic() {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metadata");
    let targets = targets();
    let docs: Vec<Vec<u8>> = targets
        .iter()
        .map(|(_, f, _)| std::fs::read(fixtures.join(f)).unwrap())
        .collect();
    for (i, (name, _, parse)) in targets.iter().enumerate() {
        let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        parse(&docs[i]);
        for n in 0..iterations {
            let input = if n % 10 == 0 {
                (0..rng.below(256)).map(|_| rng.next() as u8).collect()
            } else {
                let other = rng.below(docs.len());
                mutate(&mut rng, &docs[i], &docs[other])
            };
            let caught = std::panic::catch_unwind(|| parse(&input));
            assert!(
                caught.is_ok(),
                "{name} panicked on input (FUZZ_SEED={seed}, iteration {n}): {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[test]
fn fixture_documents_parse() {
    // The seeds themselves are valid, so mutations start from the interesting paths.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metadata");
    let ok = |f: &str| std::fs::read(fixtures.join(f)).unwrap();
    assert!(parse::azure(&ok("azure/metadata/instance")).is_ok());
    assert!(parse::hetzner(&ok("hetzner/hetzner/v1/metadata")).is_ok());
    assert!(parse::digitalocean(&ok("digitalocean/metadata/v1.json")).is_ok());
    assert!(
        parse::openstack_network_data(&ok("openstack/openstack/latest/network_data.json")).is_ok()
    );
    assert!(parse::network_config(&ok("nocloud/network-config")).is_ok());
}
