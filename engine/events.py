"""The job event vocabulary: what the pipeline emits and what reporters, the job page and the API read.

Each event is a row (seq, type, data). Types and their data:

- submitted      {trigger, requester}
- state          {state, reason?, limit?, kind?, deadline?} queued/running/waiting/succeeded/failed/cancelled;
                                                           waiting: kind question | approval, deadline (ISO)
- phase          {phase, step?, of?}                       preparing, planning, coding, testing, publishing
- resumed        {attempt}                                 a retried run picks up from its last checkpoint
- plan           {steps: [{title, rationale, acceptance, files}]}
- step_started   {index, title}
- step_finished  {index, state, commit_sha?, no_changes?, error?, refusal?}
                                                           state: done | failed | skipped | refused;
                                                           a done step that changed nothing has no commit
                                                           and no_changes: true; refusal: the model's words
- tests          {index, command, passed, round, tail}     tail: the last lines of the output
- llm_call       {role, model, tokens_in, tokens_out, tokens_cached, tokens_reasoning, usd, checked_usd,
                  billed_on, outcome, attempt, latency_ms, step_index, usage_note?, refusal?}
                                                           one per request that left (each retry is one);
                                                           usd: billed, checked_usd: the guard's worst case
- edit_refused   {path, reason}
- note           {kind, text}                              a memory note the coder wrote
- pushed         {branch, head_sha}
- pr             {number, url, draft, created}
- limit          {limit, reason}                           a budget/request/time limit stopped the job
- cancel_requested {by}
- instructions   {files: [{path, chars, truncated}], step_index?}  the repository's instruction files read
- sandbox        {runner, network, test_command, problem?}  where the repository's commands run (bwrap,
                 none) or why they do not
- setup          {status, source, commands, notes, network, key?, seconds?, reason?, tail?}  the
                 repository's setup: running, ran, reused (an earlier job's environment), failed, or skipped
- context        {step_index, chosen, considered, tokens}  the context engine's summary for one build
- reporter_error {reporter, on, seq, error}             a reporter could not show event `seq` (not published)
- reporter_caught_up {reporter, seq}                    a later attempt showed the job's end after all
- retrying       {reason, in_seconds}                     a transient failure: the queue runs the job again
- question       {text, asked}                            the planner asks before planning (asked: 1, 2)
- awaiting_approval {summary, steps}                      the plan waits for a writer's approval
- answered       {text, by, via}                          the answer that resumed the job (via: github, slack)
- approved       {by, via, amendment?}                    the plan's approval (via: comment, reaction, slack)
- review_comment {n, addressed, reply}                    the coder's word on numbered review comment n
- review_reply   {n, comment_id, addressed}               autodev answered that comment's thread on GitHub
- review_resolved {n, comment_id, thread_id}              and resolved the thread (addressed comments only)
- review_reply_failed {action, comment_id, tries, error}  a reply or resolve kept failing; the job goes on
- waiting_behind {job_id, text}                           another job has the branch (one conversation per
                                                           PR): this one stays queued until that one ends
- state cancelled {…, replaced_by}                         a queued job a newer request on its branch took
                                                           the place of (superseded, or folded into it)
"""

from __future__ import annotations

SUBMITTED = "submitted"
STATE = "state"
PHASE = "phase"
RESUMED = "resumed"
PLAN = "plan"
STEP_STARTED = "step_started"
STEP_FINISHED = "step_finished"
TESTS = "tests"
LLM_CALL = "llm_call"
EDIT_REFUSED = "edit_refused"
NOTE = "note"
PUSHED = "pushed"
PR = "pr"
LIMIT = "limit"
CANCEL_REQUESTED = "cancel_requested"
CONTEXT = "context"
INSTRUCTIONS = "instructions"
SANDBOX = "sandbox"
SETUP = "setup"
REPORTER_ERROR = "reporter_error"
REPORTER_CAUGHT_UP = "reporter_caught_up"
RETRYING = "retrying"
QUESTION = "question"
AWAITING_APPROVAL = "awaiting_approval"
ANSWERED = "answered"
APPROVED = "approved"
REVIEW_COMMENT = "review_comment"
REVIEW_REPLY = "review_reply"
REVIEW_RESOLVED = "review_resolved"
REVIEW_REPLY_FAILED = "review_reply_failed"
WAITING_BEHIND = "waiting_behind"

PHASES = ("preparing", "planning", "coding", "testing", "publishing")
