//! The SLO directory is watched: a new or changed file is loaded on the next tick; an invalid
//! one is refused as a whole and the current set stays.

use std::time::Duration;

use crate::{CHECKOUT, Sim, T0};

async fn wait_for(sim: &Sim, what: impl Fn(&Sim) -> bool) -> bool {
    for _ in 0..100 {
        if what(sim) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_files_are_reloaded_when_they_change() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("checkout.yaml"), CHECKOUT).expect("write");
    let slos = sightline_slo::engine::load_dir(dir.path()).expect("valid");
    let sim = Sim::new("", T0).await;
    sim.engine.reload(slos).await.expect("reload");
    let stop = stop_signal();
    let run = tokio::spawn(sim.engine.clone().run(
        Duration::from_millis(20),
        Some(dir.path().to_path_buf()),
        stop.1,
    ));

    let second = CHECKOUT.replace("checkout-availability", "checkout-availability-2");
    std::fs::write(dir.path().join("second.yaml"), &second).expect("write");
    assert!(
        wait_for(&sim, |s| s.engine.get("checkout-availability-2").is_some()).await,
        "a new file is loaded"
    );

    // A broken file: nothing changes, the previous set keeps running.
    std::fs::write(dir.path().join("broken.yaml"), "name: [oops\n").expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.engine.get("checkout-availability").is_some());
    assert!(sim.engine.get("checkout-availability-2").is_some());

    // Fixed and one file removed: the set follows the directory.
    std::fs::remove_file(dir.path().join("broken.yaml")).expect("rm");
    std::fs::remove_file(dir.path().join("second.yaml")).expect("rm");
    assert!(
        wait_for(&sim, |s| s.engine.get("checkout-availability-2").is_none()).await,
        "a removed file's SLO goes away"
    );
    assert!(sim.engine.get("checkout-availability").is_some());
    let _ = stop.0.send(());
    run.await.expect("run");
}

fn stop_signal() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}
