//! What a training project's files say: the training script (the editable file), the command
//! that runs it and the one that builds it, the files it imports from the repository (read-only),
//! and the notes worth showing an agent. Each guess carries why, for the pipeline's comments.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

/// A guessed value and the reason, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Guess {
    pub value: String,
    pub why: String,
}

fn guess(value: impl Into<String>, why: impl Into<String>) -> Guess {
    Guess {
        value: value.into(),
        why: why.into(),
    }
}

/// The guesses about one repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub editable: Guess,
    pub run: Guess,
    pub build: Option<Guess>,
    /// Environment variables for the build and run: name, value, why.
    pub env: Vec<(String, String, String)>,
    pub read_only: Vec<Guess>,
    pub context: Vec<String>,
    /// The research instructions of an autoresearch-style project (`program.md`).
    pub instructions: Option<String>,
}

/// What the user said on the command line.
#[derive(Debug, Clone, Default)]
pub struct Given<'a> {
    pub run: Option<&'a str>,
    pub editable: Option<&'a str>,
    /// Whether `python` (else `python3`) is the interpreter's name here.
    pub python: Option<&'a str>,
}

/// Guesses from `files`, the repository's tracked files, and `read`, which reads one of them.
pub fn inspect(
    files: &[String],
    read: &dyn Fn(&str) -> Option<String>,
    given: &Given,
) -> Result<Project, String> {
    let has = |path: &str| files.iter().any(|f| f == path);
    let cargo = has("Cargo.toml");
    let editable = match given.editable {
        Some(path) if has(path) => guess(path, "given with `--editable`"),
        Some(path) => {
            return Err(format!(
                "`{path}` is not a tracked file of the repository; `--editable` names a \
                 committed file, relative to the repository"
            ));
        }
        None => match given.run.and_then(|run| file_in_command(run, files)) {
            Some(path) => guess(path, "the script the run command runs"),
            None if cargo => rust_editable(files)?,
            None => python_editable(files)?,
        },
    };
    let python = given.python.unwrap_or("python3");
    let (run, build, env) = if cargo {
        cargo_commands(files, read)
    } else {
        python_commands(files, read, &editable.value, python)
    };
    let run = match given.run {
        Some(command) => guess(command, "given with `--run`"),
        None => run,
    };
    let read_only = read_only_files(files, read, &editable.value, &run.value);
    let context = ["README.md", "README", "README.rst"]
        .into_iter()
        .filter(|f| has(f))
        .take(1)
        .map(str::to_string)
        .collect();
    let instructions = ["program.md", "PROGRAM.md"]
        .into_iter()
        .find(|f| has(f))
        .map(str::to_string);
    Ok(Project {
        editable,
        run,
        build,
        env,
        read_only,
        context,
        instructions,
    })
}

/// The first word of a command that is a tracked file (`python train.py --fast` is `train.py`).
fn file_in_command(command: &str, files: &[String]) -> Option<String> {
    command
        .split_whitespace()
        .map(|word| word.trim_start_matches("./"))
        .find(|word| files.iter().any(|f| f == word) && is_source(word))
        .map(str::to_string)
}

fn is_source(path: &str) -> bool {
    path.ends_with(".py") || path.ends_with(".rs")
}

fn top_level_python(files: &[String]) -> Vec<&String> {
    files
        .iter()
        .filter(|f| f.ends_with(".py") && !f.contains('/'))
        .collect()
}

fn python_editable(files: &[String]) -> Result<Guess, String> {
    for name in ["train.py", "main.py"] {
        if files.iter().any(|f| f == name) {
            return Ok(guess(name, format!("the repository's `{name}`")));
        }
    }
    let top = top_level_python(files);
    if let Some(train) = top.iter().find(|f| f.contains("train")) {
        return Ok(guess(
            train.as_str(),
            "the top-level Python file named for training",
        ));
    }
    if let [only] = top.as_slice() {
        return Ok(guess(
            only.as_str(),
            "the only Python file at the top of the repository",
        ));
    }
    let listed = if top.is_empty() {
        "there is no Python file at its top".to_string()
    } else {
        format!(
            "its top-level Python files are {}",
            top.iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(format!(
        "cannot tell which file is the training script: {listed}; name it with `--editable \
         FILE` (and the command with `--run CMD`)"
    ))
}

fn rust_editable(files: &[String]) -> Result<Guess, String> {
    for name in ["src/train.rs", "src/main.rs"] {
        if files.iter().any(|f| f == name) {
            return Ok(guess(name, format!("the crate's `{name}`")));
        }
    }
    Err(
        "cannot tell which file of the crate trains: there is no `src/train.rs` or \
         `src/main.rs`; name it with `--editable FILE`"
            .to_string(),
    )
}

type Commands = (Guess, Option<Guess>, Vec<(String, String, String)>);

fn cargo_commands(files: &[String], read: &dyn Fn(&str) -> Option<String>) -> Commands {
    let package = read("Cargo.toml")
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| {
            table
                .get("package")?
                .get("name")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "main".to_string());
    let locked = files.iter().any(|f| f == "Cargo.lock");
    let build = if locked {
        guess(
            "cargo build --release --locked",
            "a Cargo project; `--locked` keeps the versions of Cargo.lock",
        )
    } else {
        guess("cargo build --release", "a Cargo project")
    };
    let run = guess(
        format!("target/release/{package}"),
        format!("the binary of package `{package}`, built above"),
    );
    let env = vec![(
        "CARGO_TARGET_DIR".to_string(),
        "target".to_string(),
        "the binary is where the run command looks, even when CARGO_TARGET_DIR is set".to_string(),
    )];
    (run, Some(build), env)
}

fn python_commands(
    files: &[String],
    read: &dyn Fn(&str) -> Option<String>,
    script: &str,
    python: &str,
) -> Commands {
    let has = |path: &str| files.iter().any(|f| f == path);
    let make_target = read("Makefile").filter(|text| text.lines().any(|l| l.starts_with("train:")));
    if has("uv.lock")
        || (has("pyproject.toml") && read("pyproject.toml").is_some_and(|t| t.contains("[tool.uv")))
    {
        let run = match make_target {
            Some(_) => guess("make train", "the Makefile's `train` target"),
            None => guess(format!("uv run {script}"), "a uv project (`uv.lock`)"),
        };
        return (
            run,
            Some(guess("uv sync", "installs the locked dependencies")),
            Vec::new(),
        );
    }
    let run = match make_target {
        Some(_) => guess("make train", "the Makefile's `train` target"),
        None => guess(format!("{python} {script}"), "a Python script"),
    };
    let build = if has("requirements.txt") {
        Some(guess(
            format!("{python} -m pip install -r requirements.txt"),
            "the repository's requirements.txt",
        ))
    } else {
        None
    };
    (run, build, Vec::new())
}

static PY_IMPORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:from\s+([\w.]+)\s+import\b|import\s+([\w.]+(?:\s*,\s*[\w.]+)*))")
        .expect("a valid regex")
});
static PY_EXEC_OPEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"exec\(open\(\s*['"]([^'"]+)['"]"#).expect("a valid regex"));

/// The files the training script depends on that an experiment must not change: the modules it
/// imports from the repository, files it executes, files the run command names, the
/// dependency pins; for a crate, its other sources and manifests.
fn read_only_files(
    files: &[String],
    read: &dyn Fn(&str) -> Option<String>,
    editable: &str,
    run: &str,
) -> Vec<Guess> {
    let has = |path: &str| files.iter().any(|f| f == path);
    let mut found: Vec<Guess> = Vec::new();
    let mut add = |path: String, why: String| {
        if path != editable && has(&path) && !found.iter().any(|g| g.value == path) {
            found.push(Guess { value: path, why });
        }
    };
    let text = read(editable).unwrap_or_default();
    if editable.ends_with(".py") {
        let dir = Path::new(editable)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        for module in python_imports(&text) {
            for path in module_paths(&module, &dir) {
                add(path, format!("imported by `{editable}`"));
            }
        }
        for caps in PY_EXEC_OPEN.captures_iter(&text) {
            add(caps[1].to_string(), format!("executed by `{editable}`"));
        }
    } else if editable.ends_with(".rs") {
        for file in files
            .iter()
            .filter(|f| f.starts_with("src/") && f.ends_with(".rs"))
        {
            add(file.clone(), "another source of the crate".to_string());
        }
    }
    for word in run.split_whitespace() {
        add(
            word.trim_start_matches("./").to_string(),
            "named in the run command".to_string(),
        );
    }
    for pin in [
        "pyproject.toml",
        "uv.lock",
        "requirements.txt",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        add(
            pin.to_string(),
            "the dependencies: an experiment changes the code, not the environment".to_string(),
        );
    }
    found
}

/// The modules a Python file imports, as written (`prepare`, `model`, `a.b`).
fn python_imports(text: &str) -> Vec<String> {
    let mut modules = Vec::new();
    for line in text.lines() {
        let Some(caps) = PY_IMPORT.captures(line) else {
            continue;
        };
        if let Some(from) = caps.get(1) {
            modules.push(from.as_str().to_string());
        } else if let Some(list) = caps.get(2) {
            modules.extend(list.as_str().split(',').map(|m| m.trim().to_string()));
        }
    }
    modules
}

/// Where a module's file would be: beside the script, or from the repository's top.
fn module_paths(module: &str, dir: &str) -> Vec<String> {
    let relative = module.replace('.', "/");
    let mut paths = Vec::new();
    for base in [dir, ""] {
        let prefix = if base.is_empty() {
            String::new()
        } else {
            format!("{base}/")
        };
        paths.push(format!("{prefix}{relative}.py"));
        paths.push(format!("{prefix}{relative}/__init__.py"));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)], given: Given) -> Result<Project, String> {
        let names: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
        let read = |path: &str| {
            files
                .iter()
                .find(|(n, _)| *n == path)
                .map(|(_, t)| t.to_string())
        };
        inspect(&names, &read, &given)
    }

    fn values(guesses: &[Guess]) -> Vec<&str> {
        guesses.iter().map(|g| g.value.as_str()).collect()
    }

    #[test]
    fn a_uv_project_runs_its_train_py_and_pins_what_it_imports() {
        let p = project(
            &[
                (
                    "train.py",
                    "import os\nimport torch\nfrom prepare import MAX_SEQ_LEN, evaluate_bpb\n",
                ),
                ("prepare.py", "import requests\n"),
                ("pyproject.toml", "[project]\nname = \"x\"\n"),
                ("uv.lock", ""),
                ("program.md", ""),
                ("README.md", ""),
            ],
            Given::default(),
        )
        .unwrap();
        assert_eq!(p.editable.value, "train.py");
        assert_eq!(p.run.value, "uv run train.py");
        assert_eq!(p.build.unwrap().value, "uv sync");
        assert_eq!(
            values(&p.read_only),
            ["prepare.py", "pyproject.toml", "uv.lock"]
        );
        assert_eq!(p.instructions.as_deref(), Some("program.md"));
        assert_eq!(p.context, ["README.md"]);
    }

    #[test]
    fn a_given_command_names_the_script_and_its_config() {
        let p = project(
            &[
                (
                    "train.py",
                    "from model import GPT\nexec(open('configurator.py').read())\n",
                ),
                ("model.py", ""),
                ("configurator.py", ""),
                ("config/train_shakespeare_char.py", ""),
                ("sample.py", ""),
            ],
            Given {
                run: Some("python train.py config/train_shakespeare_char.py"),
                ..Given::default()
            },
        )
        .unwrap();
        assert_eq!(p.editable.value, "train.py");
        assert_eq!(
            p.run.value,
            "python train.py config/train_shakespeare_char.py"
        );
        assert_eq!(p.build, None);
        assert_eq!(
            values(&p.read_only),
            [
                "model.py",
                "configurator.py",
                "config/train_shakespeare_char.py"
            ]
        );
    }

    #[test]
    fn a_crate_builds_in_release_and_runs_its_binary() {
        let p = project(
            &[
                ("Cargo.toml", "[package]\nname = \"nanochat\"\n"),
                ("Cargo.lock", ""),
                ("src/main.rs", ""),
                ("src/train.rs", ""),
                ("src/prepare.rs", ""),
            ],
            Given::default(),
        )
        .unwrap();
        assert_eq!(p.editable.value, "src/train.rs");
        assert_eq!(p.run.value, "target/release/nanochat");
        assert_eq!(p.build.unwrap().value, "cargo build --release --locked");
        assert_eq!(
            values(&p.read_only),
            ["src/main.rs", "src/prepare.rs", "Cargo.toml", "Cargo.lock"]
        );
    }

    #[test]
    fn one_script_with_requirements_installs_them() {
        let p = project(
            &[
                ("fit_mnist.py", "import sklearn\n"),
                ("requirements.txt", ""),
            ],
            Given {
                python: Some("python"),
                ..Given::default()
            },
        )
        .unwrap();
        assert_eq!(p.editable.value, "fit_mnist.py");
        assert_eq!(p.run.value, "python fit_mnist.py");
        assert_eq!(
            p.build.unwrap().value,
            "python -m pip install -r requirements.txt"
        );
    }

    #[test]
    fn unclear_scripts_ask_for_editable() {
        let err = project(&[("a.py", ""), ("b.py", "")], Given::default()).unwrap_err();
        assert!(err.contains("`a.py`, `b.py`"), "{err}");
        assert!(err.contains("--editable FILE"), "{err}");
        let err = project(
            &[("a.py", "")],
            Given {
                editable: Some("b.py"),
                ..Given::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("`b.py` is not a tracked file"), "{err}");
    }
}
