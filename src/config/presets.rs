//! The coding-agent CLIs arun knows by name (`preset = "claude"`, ...): the non-interactive
//! command line each expands to, with the prompt given the way the tool expects, edits allowed in
//! the repository only, and no commits. How each tool's transcript is read is
//! `propose::transcripts`.

use super::file::AgentPreset;
use crate::text::shell_quote;

/// A prompt for tools that take it as an argument while arun gives the real one on stdin.
const FOLLOW_STDIN: &str = "Carry out the task described above.";

/// The command line of `preset`, run with `sh -c` in the target repository with the prompt on
/// stdin and in `$ARUN_PROMPT_FILE`. `editable` and `read_only` are the pipeline's files, for
/// tools that are told which files to work on.
pub fn command(preset: AgentPreset, editable: &[String], read_only: &[String]) -> String {
    match preset {
        // -p: print mode, prompt from stdin. acceptEdits: file edits in the working directory
        // need no approval; anything else needing approval (shell commands) is refused in
        // print mode, so the agent cannot run the experiment or touch git. --max-turns bounds
        // a confused agent; no session files are written.
        AgentPreset::Claude => "claude -p --output-format json --permission-mode acceptEdits \
                                --max-turns 50 --no-session-persistence"
            .to_string(),
        // exec: non-interactive, no approvals; the workspace-write sandbox lets it write only in
        // the working directory (and temp), with no network for commands. `-` reads the prompt
        // from stdin. --ephemeral: no session files.
        AgentPreset::Codex => {
            "codex exec --json --sandbox workspace-write --ephemeral --color never -".to_string()
        }
        // -p: headless; stdin comes first and the -p text is appended to it. auto_edit approves
        // edit tools only; --skip-trust trusts the repository for this session.
        AgentPreset::Gemini => format!(
            "gemini --output-format json --approval-mode auto_edit --skip-trust --prompt {}",
            shell_quote(FOLLOW_STDIN)
        ),
        // The prompt from its file, the editable files in the chat, the read-only ones as
        // references; no commits (arun commits), no questions, no .gitignore edits, no repo map
        // cache in the work tree, histories kept in the run directory.
        AgentPreset::Aider => {
            let mut command = String::from(
                "aider --message-file \"$ARUN_PROMPT_FILE\" --yes-always --no-auto-commits \
                 --no-dirty-commits --no-gitignore --no-check-update --no-show-model-warnings \
                 --no-analytics --no-pretty --no-fancy-input --map-tokens 0 \
                 --no-restore-chat-history --chat-history-file \"$ARUN_RUN_DIR/aider.chat.md\" \
                 --input-history-file \"$ARUN_RUN_DIR/aider.input.history\"",
            );
            for path in editable {
                command.push_str(&format!(" --file {}", shell_quote(path)));
            }
            for path in read_only {
                command.push_str(&format!(" --read {}", shell_quote(path)));
            }
            command
        }
        // run: non-interactive, prompt from stdin, JSON events.
        AgentPreset::Opencode => "opencode run --format json".to_string(),
    }
}

/// The preset's name as written in a pipeline.
pub fn name(preset: AgentPreset) -> &'static str {
    match preset {
        AgentPreset::Claude => "claude",
        AgentPreset::Codex => "codex",
        AgentPreset::Gemini => "gemini",
        AgentPreset::Aider => "aider",
        AgentPreset::Opencode => "opencode",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_paths() {
        let aider = command(
            AgentPreset::Aider,
            &["train.py".to_string(), "my model.py".to_string()],
            &["prepare.py".to_string()],
        );
        assert!(
            aider.ends_with(" --file train.py --file 'my model.py' --read prepare.py"),
            "{aider}"
        );
    }
}
