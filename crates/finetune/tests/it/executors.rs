//! The executor contracts: `command` (environment, log/metric protocol, exit codes, cancel and timeout with
//! SIGTERM then SIGKILL of the whole process group, resource limits) and `docker` (the exact command line,
//! and its supervision through a stand-in runtime, since no container runtime runs here).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zg_finetune::{
    CancelToken, CommandExecutor, CommandSpec, ContainerRuntime, DockerExecutor, Error, Executor, Job,
    ResourceLimits, TrainContext, TrainEvent, TrainingParams,
};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn job(dir: &Path) -> Job {
    let (input, output) = (dir.join("work/input"), dir.join("work/output"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("dataset.jsonl"),
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\n",
    )
    .unwrap();
    let params = TrainingParams::parse(r#"{"num_train_epochs": 2}"#, 10).unwrap();
    std::fs::write(input.join("params.json"), params.to_json()).unwrap();
    Job {
        task_id: "3f1c2b7a-9d4e-4a61-8c2f-0123456789ab".into(),
        model: "Qwen2.5-0.5B-Instruct".into(),
        base_model_dir: Some(dir.join("models/qwen")),
        input_dir: input,
        output_dir: output,
        params,
    }
}

type Events = Arc<Mutex<Vec<TrainEvent>>>;

fn ctx(limit: Duration) -> (TrainContext, Events, CancelToken) {
    let events: Events = Arc::default();
    let e2 = Arc::clone(&events);
    let token = CancelToken::new();
    let ctx = TrainContext::new(move |e| e2.lock().unwrap().push(e), token.clone(), limit);
    (ctx, events, token)
}

fn logs(events: &Events) -> Vec<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Log(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

fn spec(argv: Vec<String>) -> CommandSpec {
    CommandSpec {
        argv,
        env: BTreeMap::from([("HF_HOME".to_owned(), "/cache/hf".to_owned())]),
        limits: ResourceLimits::default(),
        grace: Duration::from_millis(300),
    }
}

#[test]
fn command_trainer_gets_the_contract_and_nothing_of_the_brokers_environment() {
    assert!(
        std::env::var("CARGO_MANIFEST_DIR").is_ok(),
        "the test process has CARGO_* variables to leak"
    );
    let dir = tempfile::tempdir().unwrap();
    let trainer = script(
        dir.path(),
        "train.sh",
        r#"env | sort > "$ZG_OUTPUT_DIR/env.txt"
echo "args: $1 $2"
test -s "$ZG_DATASET" || exit 9
grep -q '"num_train_epochs": 2' "$ZG_PARAMS" || exit 8
echo 'ZG_METRIC {"epoch":1,"name":"eval_loss","value":1.5}'
echo 'ZG_PROGRESS 0.5'
echo "to stderr" >&2
printf 'weights' > "$ZG_OUTPUT_DIR/adapter.bin"
exit 0"#,
    );
    let j = job(dir.path());
    let ex = CommandExecutor::new(spec(vec![
        trainer.display().to_string(),
        "{dataset}".into(),
        "--out={output}".into(),
    ]))
    .unwrap();
    let (argv, env) = ex.command_line(&j);
    assert_eq!(argv[1], j.dataset_path().display().to_string());
    assert_eq!(argv[2], format!("--out={}", j.output_dir.display()));
    assert_eq!(
        env["ZG_BASE_MODEL_DIR"],
        j.base_model_dir.as_ref().unwrap().display().to_string()
    );
    let (c, events, _) = ctx(Duration::from_secs(20));
    let out = ex.train(&j, &c).unwrap();
    assert_eq!(
        std::fs::read(j.output_dir.join("adapter.bin")).unwrap(),
        b"weights"
    );
    let env_txt = std::fs::read_to_string(j.output_dir.join("env.txt")).unwrap();
    assert!(
        !env_txt.contains("CARGO_"),
        "the broker's environment leaked:\n{env_txt}"
    );
    for k in [
        "ZG_TASK_ID=3f1c2b7a",
        "ZG_MODEL=Qwen2.5-0.5B-Instruct",
        "HF_HOME=/cache/hf",
        "LANG=C.UTF-8",
    ] {
        assert!(env_txt.contains(k), "{k} missing:\n{env_txt}");
    }
    let l = logs(&events);
    assert!(l.iter().any(|x| x.starts_with("args: ")), "{l:?}");
    assert!(l.iter().any(|x| x == "to stderr"), "{l:?}");
    assert!(
        !l.iter().any(|x| x.starts_with("ZG_METRIC")),
        "metrics are not log lines"
    );
    assert_eq!(out.metrics.len(), 1);
    assert_eq!(
        (out.metrics[0].name.as_str(), out.metrics[0].value),
        ("eval_loss", 1.5)
    );
    assert!(events.lock().unwrap().contains(&TrainEvent::Progress(0.5)));
}

#[test]
fn a_failing_trainer_fails_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let t = script(dir.path(), "t.sh", "echo boom; exit 3");
    let ex = CommandExecutor::new(spec(vec![t.display().to_string()])).unwrap();
    let (c, _, _) = ctx(Duration::from_secs(20));
    let e = ex.train(&job(dir.path()), &c).unwrap_err();
    assert!(
        matches!(&e, Error::Training { reason, .. } if reason == "exit code 3"),
        "{e}"
    );
    let e = CommandExecutor::new(spec(vec!["/nonexistent/trainer".into()]))
        .unwrap()
        .train(&job(dir.path()), &c)
        .unwrap_err();
    assert!(e.to_string().contains("cannot start"), "{e}");
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn cancel_sends_term_then_kill_to_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    // Ignores SIGTERM and leaves a grandchild behind.
    let t = script(
        dir.path(),
        "stubborn.sh",
        r#"trap '' TERM
sleep 300 &
echo $! > "$ZG_OUTPUT_DIR/child.pid"
echo started
while :; do sleep 0.05; done"#,
    );
    let j = job(dir.path());
    let ex = CommandExecutor::new(spec(vec![t.display().to_string()])).unwrap();
    let (c, events, token) = ctx(Duration::from_secs(60));
    let canceller = {
        let token = token.clone();
        let events = Arc::clone(&events);
        std::thread::spawn(move || {
            while !logs(&events).iter().any(|l| l == "started") {
                std::thread::sleep(Duration::from_millis(10));
            }
            token.cancel();
        })
    };
    let started = Instant::now();
    let e = ex.train(&j, &c).unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(j.output_dir.join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(pid), "the grandchild {pid} survived");
    assert!(logs(&events).iter().any(|l| l.contains("stopping the trainer")));
}

#[test]
fn wall_time_and_cpu_limits_stop_a_runaway_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let t = script(dir.path(), "slow.sh", "sleep 30");
    let ex = CommandExecutor::new(spec(vec![t.display().to_string()])).unwrap();
    let (c, _, _) = ctx(Duration::from_millis(400));
    let e = ex.train(&job(dir.path()), &c).unwrap_err();
    assert!(matches!(e, Error::TimedOut { .. }), "{e}");

    let spin = script(dir.path(), "spin.sh", "while :; do :; done");
    let mut s = spec(vec![spin.display().to_string()]);
    s.limits.cpu_secs = Some(1);
    let ex = CommandExecutor::new(s).unwrap();
    let (c, _, _) = ctx(Duration::from_secs(60));
    let started = Instant::now();
    let e = ex.train(&job(dir.path()), &c).unwrap_err();
    assert!(
        matches!(&e, Error::Training { reason, .. } if reason.contains("signal")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn docker_command_line_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path());
    let mut d = DockerExecutor::new(ContainerRuntime::Docker, "ghcr.io/zg/peft-lora@sha256:abc");
    d.args = vec![
        "--dataset".into(),
        "{dataset}".into(),
        "--out".into(),
        "{output}".into(),
    ];
    d.gpus = Some("all".into());
    d.memory_bytes = Some(64 << 30);
    d.cpus = Some(8.0);
    d.env = BTreeMap::from([("HF_HUB_OFFLINE".to_owned(), "1".to_owned())]);
    let (i, o, m) = (
        j.input_dir.display().to_string(),
        j.output_dir.display().to_string(),
        j.base_model_dir.as_ref().unwrap().display().to_string(),
    );
    let expect: Vec<String> = [
        "docker",
        "run",
        "--rm",
        "--name",
        "zg-ft-3f1c2b7a-9d4e-4a61-8c2f-0123456789ab",
        "--network",
        "none",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        "4096",
        "--gpus",
        "all",
        "--memory",
        "68719476736b",
        "--cpus",
        "8",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--volume".into(),
        format!("{i}:/input:ro"),
        "--volume".into(),
        format!("{o}:/output"),
        "--volume".into(),
        format!("{m}:/model:ro"),
    ])
    .chain(
        [
            "HF_HUB_OFFLINE=1",
            "ZG_BASE_MODEL_DIR=/model",
            "ZG_DATASET=/input/dataset.jsonl",
            "ZG_INPUT_DIR=/input",
            "ZG_MODEL=Qwen2.5-0.5B-Instruct",
            "ZG_OUTPUT_DIR=/output",
            "ZG_PARAMS=/input/params.json",
            "ZG_TASK_ID=3f1c2b7a-9d4e-4a61-8c2f-0123456789ab",
        ]
        .iter()
        .flat_map(|e| ["--env".to_string(), e.to_string()]),
    )
    .chain(
        [
            "ghcr.io/zg/peft-lora@sha256:abc",
            "--dataset",
            "/input/dataset.jsonl",
            "--out",
            "/output",
        ]
        .iter()
        .map(|s| s.to_string()),
    )
    .collect();
    assert_eq!(d.command_line(&j), expect);

    let mut p = DockerExecutor::new(ContainerRuntime::Podman, "img");
    p.gpus = Some("0, 1".into());
    let line = p.command_line(&j);
    assert_eq!(line[0], "podman");
    let devs: Vec<&String> = line.iter().filter(|a| a.starts_with("nvidia.com/gpu=")).collect();
    assert_eq!(devs, ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]);
    assert!(!line.iter().any(|a| a == "--gpus"));
}

#[test]
fn docker_supervision_through_a_stand_in_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls.txt");
    // `run …`: behaves as a container whose trainer writes to the /output volume; stops when `kill` is called.
    let fake = script(
        dir.path(),
        "fake-docker",
        &format!(
            r#"echo "$*" >> {calls}
case "$1" in
  run)
    out=$(printf '%s\n' "$@" | sed -n 's/^\(.*\):\/output$/\1/p')
    echo 'ZG_METRIC {{"epoch":1,"name":"eval_loss","value":0.9}}'
    printf 'lora' > "$out/adapter.bin"
    case "$*" in *sleepy*) while [ ! -f {stop} ]; do sleep 0.05; done; exit 143;; esac
    exit 0;;
  kill) touch {stop};;
esac
exit 0"#,
            calls = calls.display(),
            stop = dir.path().join("stop").display()
        ),
    );
    let j = job(dir.path());
    let mut d = DockerExecutor::new(ContainerRuntime::Docker, "img");
    d.binary = fake.display().to_string();
    let (c, _, _) = ctx(Duration::from_secs(20));
    let out = d.train(&j, &c).unwrap();
    assert_eq!(out.metrics.len(), 1);
    assert_eq!(std::fs::read(j.output_dir.join("adapter.bin")).unwrap(), b"lora");
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with("run --rm --name zg-ft-3f1c2b7a")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l == "rm -f zg-ft-3f1c2b7a-9d4e-4a61-8c2f-0123456789ab"),
        "{log}"
    );

    // Cancel: `kill --signal TERM <name>`.
    std::fs::remove_file(&calls).unwrap();
    d.args = vec!["sleepy".into()];
    let (c, _, token) = ctx(Duration::from_secs(20));
    let t2 = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        t2.cancel();
    });
    let e = d.train(&j, &c).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(
        log.lines()
            .any(|l| l == "kill --signal TERM zg-ft-3f1c2b7a-9d4e-4a61-8c2f-0123456789ab"),
        "{log}"
    );
}
