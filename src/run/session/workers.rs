//! The workers of a run: what each experiment's build and run get to use. A worker is a place to
//! run one experiment at a time: its GPUs (the pin variables set to their indices), its CPUs or
//! thread count, and `ARUN_WORKER`, its number. The work tree is not the worker's: an experiment
//! keeps its own from proposal to decision, and a confirmation run goes to the next free worker.

use crate::config::resolve::{GpuPlan, WorkersSpec};
use crate::error::Error;
use crate::run::exec::Environment;
use crate::run::gpu::GpuMonitor;

/// The variables of common libraries that size their thread pools.
const THREAD_VARIABLES: [&str; 4] = [
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "RAYON_NUM_THREADS",
];

pub(super) struct Worker {
    /// Variables set for its commands: GPU pinning, thread counts, `ARUN_WORKER`.
    env: Vec<(String, String)>,
    /// The CPUs its commands may use; `None`: any.
    pub(super) cpus: Option<Vec<u32>>,
    /// The experiment it builds or runs for now.
    pub(super) busy: Option<u64>,
}

impl Worker {
    /// Sets its variables in `env`.
    pub(super) fn pin(&self, env: &mut Environment) {
        for (name, value) in &self.env {
            env.set(name.clone(), value.clone());
        }
    }

    /// How it is named in messages: its GPUs when it has some.
    pub(super) fn describe(&self, i: usize) -> String {
        let gpus = self
            .env
            .iter()
            .find(|(name, _)| name != "ARUN_WORKER" && !THREAD_VARIABLES.contains(&name.as_str()));
        match gpus {
            Some((name, value)) => format!("worker {i} ({name}={value})"),
            None => format!("worker {i}"),
        }
    }
}

/// The workers the pipeline asks for; `gpus = "auto"` asks the driver how many GPUs there are.
pub(super) fn plan(spec: &WorkersSpec, gpu: Option<&GpuMonitor>) -> Result<Vec<Worker>, Error> {
    let gpus: Option<Vec<Vec<u32>>> = match &spec.gpus {
        GpuPlan::Unset => None,
        GpuPlan::PerWorker(lists) => Some(lists.clone()),
        GpuPlan::Auto => {
            let Some(monitor) = gpu else {
                return Err(Error::Setup(
                    "`[workers] gpus = \"auto\"` but the NVIDIA driver sees no GPU (NVML could \
                     not be loaded); list the GPU indices, or leave `gpus` out"
                        .to_string(),
                ));
            };
            let all: Vec<u32> = (0..monitor.count()).collect();
            Some(GpuPlan::share(&all, spec.count).map_err(|message| {
                Error::Setup(format!("`[workers] gpus = \"auto\"`: {message}"))
            })?)
        }
    };
    Ok((0..spec.count as usize)
        .map(|i| {
            let mut env = vec![("ARUN_WORKER".to_string(), i.to_string())];
            if let Some(gpus) = &gpus {
                let list: Vec<String> = gpus[i].iter().map(u32::to_string).collect();
                for name in &spec.pin_env {
                    env.push((name.clone(), list.join(",")));
                }
            }
            if let Some(threads) = spec.threads {
                for name in THREAD_VARIABLES {
                    env.push((name.to_string(), threads.to_string()));
                }
            }
            Worker {
                env,
                cpus: spec.cpus.as_ref().map(|cpus| cpus[i].clone()),
                busy: None,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(count: u32, gpus: GpuPlan) -> WorkersSpec {
        WorkersSpec {
            count,
            gpus,
            pin_env: vec!["CUDA_VISIBLE_DEVICES".to_string(), "ADAPTER".to_string()],
            cpus: None,
            threads: Some(2),
            ahead: 0,
            share: Vec::new(),
        }
    }

    fn vars(worker: &Worker) -> Vec<(String, String)> {
        let mut env = Environment::default();
        worker.pin(&mut env);
        env.vars()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn each_worker_gets_its_own_gpus_in_every_pin_variable() {
        let workers = plan(
            &spec(2, GpuPlan::PerWorker(vec![vec![0, 1], vec![2, 3]])),
            None,
        )
        .expect("a plan");
        let second = vars(&workers[1]);
        assert!(second.contains(&("CUDA_VISIBLE_DEVICES".into(), "2,3".into())));
        assert!(second.contains(&("ADAPTER".into(), "2,3".into())));
        assert!(second.contains(&("ARUN_WORKER".into(), "1".into())));
        assert!(second.contains(&("OMP_NUM_THREADS".into(), "2".into())));
        assert_eq!(
            workers[0].describe(0),
            "worker 0 (CUDA_VISIBLE_DEVICES=0,1)"
        );
    }

    #[test]
    fn auto_without_a_driver_is_refused_with_what_to_do() {
        let Err(Error::Setup(message)) = plan(&spec(2, GpuPlan::Auto), None) else {
            panic!("auto without NVML must be refused");
        };
        assert!(message.contains("list the GPU indices"), "{message}");
    }

    #[test]
    fn without_gpus_the_environment_only_names_the_worker() {
        let mut spec = spec(3, GpuPlan::Unset);
        spec.threads = None;
        let workers = plan(&spec, None).expect("a plan");
        assert_eq!(workers.len(), 3);
        assert_eq!(vars(&workers[2]), vec![("ARUN_WORKER".into(), "2".into())]);
        assert_eq!(workers[2].describe(2), "worker 2");
    }
}
