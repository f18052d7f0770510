//! Export + validate (O3, O7): a corpus exported as a BagIt directory, then
//! validated, side by side in one run with the hashing floor (`sha256sum`
//! over the same payload files, one process and two) and with
//! `bagit.py --validate --processes 2` on the same package. The `.tar.zst`
//! form is reported separately (its validation includes unpacking).
//!
//!     cargo run --release -p kontextual-bench -- --only export --n 20000 --runs 3

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kontextual_app::{
    Caller, ExportScope, ExportTarget, Services, Silent, StoreConfig, StoreOpenMode, UnpackLimits,
    check_package,
};
use kontextual_model::{Actor, Namespace};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn payload_files(bag: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&bag.join("data"), &mut out);
    out.sort();
    out
}

/// `sha256sum` over the files, through `xargs` (`-P procs`).
fn sha256sum(list: &Path, procs: usize) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "xargs -0 -n 512 -P {procs} sha256sum < '{}' > /dev/null",
            list.display()
        ))
        .output()
        .context("running sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(start.elapsed())
}

fn bagit_python(bag: &Path) -> Result<Option<Duration>> {
    let available = Command::new("python3")
        .args(["-c", "import bagit"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("  bagit-python not installed (pip install bagit): skipping that peer");
        return Ok(None);
    }
    let start = Instant::now();
    let out = Command::new("python3")
        .args(["-m", "bagit", "--validate", "--processes", "2", "--quiet"])
        .arg(bag)
        .output()?;
    if !out.status.success() {
        bail!(
            "bagit.py says the bag is invalid: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Some(start.elapsed()))
}

pub fn run(n: usize, runs: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    eprintln!("generating {n} markdown files of 1–8 KB and ingesting them…");
    let corpus = tmp.path().join("corpus");
    crate::retrieval::generate(&corpus, n)?;
    let svc = Services::open(
        &StoreConfig {
            data_dir: tmp.path().join("data"),
            busy_timeout: Duration::from_secs(30),
        },
        StoreOpenMode::Create,
    )?;
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    let r = svc.ingest(
        &caller,
        &kontextual_app::IngestRequest {
            paths: vec![corpus],
            collection: "bench".to_owned(),
            prune: false,
            source_system: None,
        },
        &kontextual_app::NoProgress,
    )?;
    if r.new != n as u64 {
        bail!("ingested {} of {n}", r.new);
    }
    let scope = ExportScope {
        all: true,
        ..ExportScope::default()
    };

    let (mut ex, mut val, mut s1, mut s2, mut py) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut ext, mut valt) = (vec![], vec![]);
    let mut bytes = 0u64;
    let mut files = 0u64;
    let mut tar_bytes = 0u64;
    for round in 0..runs {
        eprintln!("round {}/{runs}", round + 1);
        let bag = tmp.path().join(format!("bag{round}"));
        let start = Instant::now();
        let rep = svc.export(&caller, &scope, ExportTarget::Dir(bag.clone()))?;
        ex.push(start.elapsed());
        bytes = rep.payload_bytes;
        files = rep.payload_files;
        let list = tmp.path().join(format!("files{round}"));
        let mut nul = Vec::new();
        for f in payload_files(&bag) {
            nul.extend_from_slice(f.as_os_str().as_encoded_bytes());
            nul.push(0);
        }
        std::fs::write(&list, nul)?;
        crate::settle(&payload_files(&bag));
        // Interleaved so cache and disk drift hit every side alike.
        let order: [u8; 4] = if round % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
        };
        for side in order {
            match side {
                0 => {
                    let start = Instant::now();
                    let checked = check_package(&bag, None, UnpackLimits::default(), &Silent)?;
                    val.push(start.elapsed());
                    if !checked.verdict.valid {
                        bail!("our package is not valid: {:?}", checked.verdict.problems);
                    }
                }
                1 => s1.push(sha256sum(&list, 1)?),
                2 => s2.push(sha256sum(&list, 2)?),
                _ => {
                    if let Some(d) = bagit_python(&bag)? {
                        py.push(d);
                    }
                }
            }
        }
        // The archive form, separately.
        let tar = tmp.path().join(format!("snap{round}.tar.zst"));
        let start = Instant::now();
        let f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tar)?);
        svc.export(
            &caller,
            &scope,
            ExportTarget::TarZst {
                out: Box::new(f),
                root: "snap".into(),
            },
        )?;
        ext.push(start.elapsed());
        tar_bytes = std::fs::metadata(&tar)?.len();
        let start = Instant::now();
        let checked = check_package(&tar, Some(tmp.path()), UnpackLimits::default(), &Silent)?;
        valt.push(start.elapsed());
        if !checked.verdict.valid {
            bail!("our archive is not valid");
        }
        std::fs::remove_dir_all(&bag)?;
    }
    let mb = bytes as f64 / 1e6;
    let rate = |d: Duration| mb / d.as_secs_f64();
    let (v, a, b) = (median(&mut val), median(&mut s1), median(&mut s2));
    println!(
        "\n### Export + validate: {n} artifacts, payload {files} files, {mb:.1} MB, median of {runs}\n"
    );
    println!("| step | seconds | MB/s | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| export (directory) | {:.2} | {:.0} | |",
        median(&mut ex).as_secs_f64(),
        rate(median(&mut ex))
    );
    println!(
        "| **validate (ours, `package validate`)** | {:.3} | {:.0} | |",
        v.as_secs_f64(),
        rate(v)
    );
    println!(
        "| sha256sum, 1 process (floor) | {:.3} | {:.0} | ours {:.2}× |",
        a.as_secs_f64(),
        rate(a),
        a.as_secs_f64() / v.as_secs_f64()
    );
    println!(
        "| sha256sum, 2 processes | {:.3} | {:.0} | ours {:.2}× |",
        b.as_secs_f64(),
        rate(b),
        b.as_secs_f64() / v.as_secs_f64()
    );
    if !py.is_empty() {
        let p = median(&mut py);
        println!(
            "| bagit.py --validate --processes 2 | {:.3} | {:.0} | ours {:.2}× |",
            p.as_secs_f64(),
            rate(p),
            p.as_secs_f64() / v.as_secs_f64()
        );
    }
    println!(
        "\n.tar.zst form: {:.1} MB archive; export {:.2} s, validate with unpacking {:.2} s",
        tar_bytes as f64 / 1e6,
        median(&mut ext).as_secs_f64(),
        median(&mut valt).as_secs_f64()
    );
    Ok(())
}
