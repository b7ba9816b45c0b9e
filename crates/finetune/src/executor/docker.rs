//! `docker` (or `podman`): the `command` contract inside a container image, 0G's convention for GPU
//! trainers. The task's `input/` is mounted read-only at `/input`, `output/` at `/output`, the base model
//! read-only at `/model`; the `ZG_*` variables name those paths. No network, no capabilities, no new
//! privileges, a PID limit; memory and CPU limits and GPUs as configured.
//!
//! Cancel/timeout: `<runtime> kill --signal TERM <name>`, then `<runtime> kill <name>` after the grace
//! period; the container is removed (`--rm`, and `rm -f` after exit).
//!
//! No container runtime runs on the machine that builds this repository, so the tests pin the exact command
//! line and drive the supervision through a stand-in runtime script; `examples/finetune/README.md` gives the
//! manual check on a GPU host.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use super::command::{Stopper, substitute, supervise};
use super::{Executor, Job, TrainContext, TrainOutcome};
use crate::error::{Error, Result};

/// Which CLI drives the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    /// Docker (GPUs through `--gpus`).
    Docker,
    /// Podman (GPUs through CDI: `--device nvidia.com/gpu=…`).
    Podman,
}

/// The `docker` executor.
#[derive(Debug, Clone)]
pub struct DockerExecutor {
    /// Which runtime.
    pub runtime: ContainerRuntime,
    /// The runtime binary (default `docker` / `podman` on PATH).
    pub binary: String,
    /// Image reference (pin it by digest in production).
    pub image: String,
    /// Arguments after the image (placeholders as in `command`, with container paths).
    pub args: Vec<String>,
    /// GPUs: `None` = none, `Some("all")`, `Some("0,1")`.
    pub gpus: Option<String>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit (cores, fractional allowed).
    pub cpus: Option<f64>,
    /// Extra environment variables for the container.
    pub env: BTreeMap<String, String>,
    /// Time between the TERM and the KILL.
    pub grace: std::time::Duration,
}

fn container_name(job: &Job) -> String {
    format!("zg-ft-{}", job.task_id)
}

impl DockerExecutor {
    /// A Docker executor for `image` with defaults (no GPU, no limits, 10 s grace).
    pub fn new(runtime: ContainerRuntime, image: impl Into<String>) -> Self {
        Self {
            runtime,
            binary: match runtime {
                ContainerRuntime::Docker => "docker".into(),
                ContainerRuntime::Podman => "podman".into(),
            },
            image: image.into(),
            args: Vec::new(),
            gpus: None,
            memory_bytes: None,
            cpus: None,
            env: BTreeMap::new(),
            grace: std::time::Duration::from_secs(10),
        }
    }

    /// The exact command line this job runs (the runtime binary first).
    pub fn command_line(&self, job: &Job) -> Vec<String> {
        let mut v: Vec<String> = vec![self.binary.clone(), "run".into(), "--rm".into()];
        let mut push = |a: &str, b: String| {
            v.push(a.to_owned());
            v.push(b);
        };
        push("--name", container_name(job));
        push("--network", "none".into());
        push("--cap-drop", "ALL".into());
        push("--security-opt", "no-new-privileges".into());
        push("--pids-limit", "4096".into());
        if let Some(g) = &self.gpus {
            match self.runtime {
                ContainerRuntime::Docker => {
                    let spec = if g == "all" {
                        "all".to_owned()
                    } else {
                        format!("\"device={g}\"")
                    };
                    push("--gpus", spec);
                }
                ContainerRuntime::Podman => {
                    for d in g.split(',') {
                        push("--device", format!("nvidia.com/gpu={}", d.trim()));
                    }
                }
            }
        }
        if let Some(m) = self.memory_bytes {
            push("--memory", format!("{m}b"));
        }
        if let Some(c) = self.cpus {
            push("--cpus", format!("{c}"));
        }
        push("--volume", format!("{}:/input:ro", job.input_dir.display()));
        push("--volume", format!("{}:/output", job.output_dir.display()));
        if let Some(d) = &job.base_model_dir {
            push("--volume", format!("{}:/model:ro", d.display()));
        }
        let mut env: BTreeMap<String, String> = BTreeMap::from([
            ("ZG_TASK_ID".into(), job.task_id.clone()),
            ("ZG_MODEL".into(), job.model.clone()),
            ("ZG_INPUT_DIR".into(), "/input".into()),
            ("ZG_OUTPUT_DIR".into(), "/output".into()),
            ("ZG_DATASET".into(), "/input/dataset.jsonl".into()),
            ("ZG_PARAMS".into(), "/input/params.json".into()),
        ]);
        if job.base_model_dir.is_some() {
            env.insert("ZG_BASE_MODEL_DIR".into(), "/model".into());
        }
        env.extend(self.env.clone());
        for (k, val) in env {
            push("--env", format!("{k}={val}"));
        }
        v.push(self.image.clone());
        // Placeholders name container paths inside the container.
        let inside = Job {
            input_dir: "/input".into(),
            output_dir: "/output".into(),
            base_model_dir: job.base_model_dir.as_ref().map(|_| "/model".into()),
            ..job.clone()
        };
        v.extend(self.args.iter().map(|a| substitute(a, &inside)));
        v
    }
}

struct ContainerStop<'a> {
    binary: &'a str,
    name: String,
}

impl ContainerStop<'_> {
    fn run(&self, args: &[&str]) {
        let _ = Command::new(self.binary)
            .args(args)
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Stopper for ContainerStop<'_> {
    fn terminate(&self, _child: &Child) {
        self.run(&["kill", "--signal", "TERM"]);
    }
    fn kill(&self, _child: &Child) {
        self.run(&["kill"]);
    }
    fn cleanup(&self, _child: &Child) {
        self.run(&["rm", "-f"]);
    }
}

impl Executor for DockerExecutor {
    fn kind(&self) -> &'static str {
        match self.runtime {
            ContainerRuntime::Docker => "docker",
            ContainerRuntime::Podman => "podman",
        }
    }

    fn train(&self, job: &Job, ctx: &TrainContext) -> Result<TrainOutcome> {
        let argv = self.command_line(job);
        std::fs::create_dir_all(&job.output_dir).map_err(|e| Error::io("create", &job.output_dir, e))?;
        ctx.log(format!("container trainer: {}", argv.join(" ")));
        let env = BTreeMap::from([
            (
                "PATH".to_owned(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ]);
        let work = job.input_dir.parent().unwrap_or(&job.input_dir).to_path_buf();
        let stop = ContainerStop {
            binary: &self.binary,
            name: container_name(job),
        };
        let metrics = supervise(self.kind(), &argv, &env, &work, self.grace, ctx, &stop)?;
        let summary = format!("container exited 0 with {} metric(s)", metrics.len());
        ctx.log(summary.clone());
        Ok(TrainOutcome { metrics, summary })
    }
}
