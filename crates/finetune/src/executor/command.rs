//! `command`: runs any program as the trainer, under a fixed contract.
//!
//! # The contract (what a trainer program can rely on)
//! - Working directory: the task's work directory (parent of `input/` and `output/`).
//! - Environment: cleared, then `PATH`, `LANG=C.UTF-8`, `HOME` = the work directory, the operator's
//!   configured variables, and `ZG_TASK_ID`, `ZG_MODEL`, `ZG_INPUT_DIR`, `ZG_OUTPUT_DIR`, `ZG_DATASET`
//!   (`input/dataset.jsonl`, one validated record per line), `ZG_PARAMS` (`input/params.json`, every default
//!   filled in), `ZG_BASE_MODEL_DIR` (when the model has one). Nothing of the broker's own environment (its
//!   wallet key!) leaks through.
//! - Arguments: as configured, with `{task_id}`, `{model}`, `{input}`, `{output}`, `{dataset}`, `{params}`
//!   and `{model_dir}` replaced.
//! - stdout and stderr become the task log, line by line (at most 4 KiB per line, invalid UTF-8 replaced).
//!   A line `ZG_METRIC {"epoch":1,"name":"eval_loss","value":1.93}` is a metric; `ZG_PROGRESS 0.4` is
//!   progress.
//! - Exit code 0 = success and the content of the output directory is the model; anything else fails the
//!   task with the exit code (or signal) as the reason.
//! - Cancel or timeout: SIGTERM to the program's process group, then SIGKILL after the grace period.
//! - Limits: CPU seconds and address space through `ulimit` (`sh -c`), wall time by the broker.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Executor, Job, Metric, TrainContext, TrainEvent, TrainOutcome};
use crate::error::{Error, Result};

/// Longest log line kept (bytes); longer lines are cut.
pub const MAX_LOG_LINE: usize = 4096;

/// Resource limits for a trainer process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceLimits {
    /// CPU seconds (`ulimit -t`).
    pub cpu_secs: Option<u64>,
    /// Address space in bytes (`ulimit -v`).
    pub memory_bytes: Option<u64>,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments (placeholders allowed in the arguments).
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Resource limits.
    pub limits: ResourceLimits,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// The `command` executor.
#[derive(Debug, Clone)]
pub struct CommandExecutor {
    spec: CommandSpec,
}

impl CommandExecutor {
    /// An executor running `spec`.
    pub fn new(spec: CommandSpec) -> Result<Self> {
        if spec.argv.first().is_none_or(|p| p.is_empty()) {
            return Err(Error::Config {
                field: "command".into(),
                reason: "give the trainer program (argv[0])".into(),
            });
        }
        Ok(Self { spec })
    }

    /// The exact argv and environment this job would run with (for logs and tests).
    pub fn command_line(&self, job: &Job) -> (Vec<String>, BTreeMap<String, String>) {
        let argv = self.spec.argv.iter().map(|a| substitute(a, job)).collect();
        let mut env = base_env(job);
        env.extend(self.spec.env.clone());
        (argv, env)
    }
}

pub(super) fn substitute(arg: &str, job: &Job) -> String {
    let model_dir = job
        .base_model_dir
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    arg.replace("{task_id}", &job.task_id)
        .replace("{model}", &job.model)
        .replace("{input}", &job.input_dir.display().to_string())
        .replace("{output}", &job.output_dir.display().to_string())
        .replace("{dataset}", &job.dataset_path().display().to_string())
        .replace("{params}", &job.params_path().display().to_string())
        .replace("{model_dir}", &model_dir)
}

fn base_env(job: &Job) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".into(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    env.insert("LANG".into(), "C.UTF-8".into());
    let work = job.input_dir.parent().unwrap_or(&job.input_dir);
    env.insert("HOME".into(), work.display().to_string());
    env.insert("ZG_TASK_ID".into(), job.task_id.clone());
    env.insert("ZG_MODEL".into(), job.model.clone());
    env.insert("ZG_INPUT_DIR".into(), job.input_dir.display().to_string());
    env.insert("ZG_OUTPUT_DIR".into(), job.output_dir.display().to_string());
    env.insert("ZG_DATASET".into(), job.dataset_path().display().to_string());
    env.insert("ZG_PARAMS".into(), job.params_path().display().to_string());
    if let Some(d) = &job.base_model_dir {
        env.insert("ZG_BASE_MODEL_DIR".into(), d.display().to_string());
    }
    env
}

/// Parses one output line into an event.
pub(super) fn event_of(line: &str) -> TrainEvent {
    if let Some(rest) = line.strip_prefix("ZG_METRIC ")
        && let Ok(m) = serde_json::from_str::<Metric>(rest)
        && m.value.is_finite()
    {
        return TrainEvent::Metric(m);
    }
    if let Some(rest) = line.strip_prefix("ZG_PROGRESS ")
        && let Ok(p) = rest.trim().parse::<f64>()
        && p.is_finite()
    {
        return TrainEvent::Progress(p.clamp(0.0, 1.0));
    }
    TrainEvent::Log(line.to_owned())
}

/// Reads lines (bounded) and forwards them as events.
fn pump(r: impl Read, ctx: &TrainContext, metrics: &std::sync::Mutex<Vec<Metric>>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut r).take(MAX_LOG_LINE as u64).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let cut = buf.last() != Some(&b'\n');
        if cut {
            // Skip the rest of an over-long line.
            let mut rest = Vec::new();
            let _ = r.read_until(b'\n', &mut rest);
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        let ev = event_of(line);
        if let TrainEvent::Metric(m) = &ev
            && let Ok(mut v) = metrics.lock()
        {
            v.push(m.clone());
        }
        match ev {
            TrainEvent::Log(l) => ctx.log(if cut { format!("{l} …(cut)") } else { l }),
            TrainEvent::Metric(m) => ctx.metric(m),
            TrainEvent::Progress(p) => ctx.progress(p),
        }
    }
}

/// How to stop a running trainer.
pub(super) trait Stopper: Sync {
    /// Asks the trainer to stop (SIGTERM).
    fn terminate(&self, child: &Child);
    /// Forces it (SIGKILL).
    fn kill(&self, child: &Child);
    /// After the trainer exited: removes whatever it left running (its process group, its container).
    fn cleanup(&self, child: &Child);
}

/// Signals the process group.
struct GroupSignal;

fn signal_group(child: &Child, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

impl Stopper for GroupSignal {
    fn terminate(&self, child: &Child) {
        signal_group(child, rustix::process::Signal::TERM);
    }
    fn kill(&self, child: &Child) {
        signal_group(child, rustix::process::Signal::KILL);
    }
    fn cleanup(&self, child: &Child) {
        // A background process the trainer left behind would keep the log pipes open for ever.
        signal_group(child, rustix::process::Signal::KILL);
    }
}

/// Runs `argv` with exactly `env`, streaming its output into `ctx`, until it exits, is cancelled or times
/// out. The program leads its own process group, so stopping it stops its children too.
pub(super) fn supervise(
    kind: &'static str,
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &std::path::Path,
    grace: Duration,
    ctx: &TrainContext,
    stopper: &dyn Stopper,
) -> Result<Vec<Metric>> {
    let (prog, args) = argv.split_first().ok_or_else(|| Error::Config {
        field: "command".into(),
        reason: "empty argv".into(),
    })?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| Error::Training {
        executor: kind,
        reason: format!("cannot start {prog}: {e}"),
    })?;
    let metrics = std::sync::Mutex::new(Vec::new());
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let status = std::thread::scope(|s| {
        if let Some(o) = out {
            s.spawn(|| pump(o, ctx, &metrics));
        }
        if let Some(e) = err {
            s.spawn(|| pump(e, ctx, &metrics));
        }
        let mut stopping: Option<(Instant, Error)> = None;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    stopper.cleanup(&child);
                    return Ok((st, stopping.map(|s| s.1)));
                }
                Ok(None) => {}
                Err(e) => return Err(Error::io("wait for trainer", prog, e)),
            }
            match &stopping {
                None => {
                    if let Err(why) = ctx.checkpoint() {
                        ctx.log(format!("stopping the trainer: {why}"));
                        stopper.terminate(&child);
                        stopping = Some((Instant::now(), why));
                    }
                }
                Some((since, _)) if since.elapsed() >= grace => {
                    stopper.kill(&child);
                }
                Some(_) => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let (status, stopped) = status?;
    if let Some(why) = stopped {
        return Err(why);
    }
    if status.success() {
        return Ok(metrics.into_inner().unwrap_or_default());
    }
    let reason = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "abnormal exit".into(),
    };
    Err(Error::Training {
        executor: kind,
        reason,
    })
}

/// Wraps argv in `sh -c 'ulimit …; exec "$0" "$@"'` when limits are set.
pub(super) fn with_limits(argv: Vec<String>, limits: &ResourceLimits) -> Vec<String> {
    let mut script = String::new();
    if let Some(cpu) = limits.cpu_secs {
        script.push_str(&format!("ulimit -t {cpu} && "));
    }
    if let Some(mem) = limits.memory_bytes {
        script.push_str(&format!("ulimit -v {} && ", mem.div_ceil(1024)));
    }
    if script.is_empty() {
        return argv;
    }
    script.push_str("exec \"$0\" \"$@\"");
    let mut out = vec!["/bin/sh".to_owned(), "-c".to_owned(), script];
    out.extend(argv);
    out
}

impl Executor for CommandExecutor {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn train(&self, job: &Job, ctx: &TrainContext) -> Result<TrainOutcome> {
        let (argv, env) = self.command_line(job);
        let argv = with_limits(argv, &self.spec.limits);
        let work: PathBuf = job.input_dir.parent().unwrap_or(&job.input_dir).to_path_buf();
        std::fs::create_dir_all(&job.output_dir).map_err(|e| Error::io("create", &job.output_dir, e))?;
        ctx.log(format!("command trainer: {}", argv.join(" ")));
        let metrics = supervise("command", &argv, &env, &work, self.spec.grace, ctx, &GroupSignal)?;
        let summary = format!("trainer exited 0 with {} metric(s)", metrics.len());
        ctx.log(summary.clone());
        Ok(TrainOutcome { metrics, summary })
    }
}
