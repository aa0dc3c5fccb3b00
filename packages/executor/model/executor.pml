/*
 * A SPIN model of the executor protocol of packages/executor/src/internal/engine.ts (and the Pile buffer of
 * internal/outcomeBuffer.ts): the bounded intake and its waiting submitters, admission (concurrency slots and
 * an abstract rate budget), task fibers, delivery to a bounded Pile, and the shutdown protocol.
 *
 * Every engine transition is synchronous in the real code (state is touched only between two steps of some
 * fiber), so each one is an atomic step here; everything the engine awaits (a submitter resumed, a fiber that
 * stops, a consumer that pulls, a timer) is a separate step that interleaves freely.
 *
 * No transition resumes another fiber before it has finished: a wake-up found during a transition waits in the
 * outbox (`reactPending`) and the resumed fiber's code is a later step. The last task's caller reacts to its
 * resumption (REACTOR): "submit the new request, then cancel the one it supersedes" (task 0), or "wait for task
 * 0's outcome, then submit again". SYNC_RESUME is the engine before that rule: the reacting caller runs at the
 * point of its wake-up, inside the transition (`admitWaiters` in the middle of a start or a finish, the outcome
 * waiters at the end of a `finish` that a sliding offer or a shutdown is still in the middle of).
 *
 * Sizes (override with -DNAME=value): Q intake capacity, C concurrency cap, TASKS submitted tasks, B Pile
 * capacity, RATE rate budget (0 = no rate limit), CONSUMER (2 = present or absent, chosen at the start;
 * 1 = present; 0 = absent), STRATEGY (0 suspend, 1 sliding, 2 dropping), CANCELS (caller cancels), REACTOR (1: the
 * last task's caller reacts to its resumption; 0: it submits like the others).
 * Seeded bugs (each must make SPIN report an error): BAD_NO_UNBOUND, BAD_FORGET_INTERRUPTED, BAD_STALE_PHASE,
 * BAD_EARLY_RELEASE, BAD_WAITER_LEAK, BAD_NO_WAKE, BAD_LATE_OVERWRITE, BAD_ADMIT_AT_CAP, BAD_PULL_NO_REFILL,
 * SYNC_RESUME.
 * See README.md.
 * Run: scripts/verify-model.ts (pnpm verify:model), or by hand: spin -a -DTASKS=3 executor.pml;
 * gcc -O2 -DSAFETY -DNOCLAIM -o pan pan.c; ./pan   (liveness: gcc -O2 -DNFAIR=3; ./pan -a -f -N progress)
 */

#ifndef Q
#define Q 1
#endif
#ifndef C
#define C 1
#endif
#ifndef TASKS
#define TASKS 2
#endif
#ifndef B
#define B 1
#endif
#ifndef RATE
#define RATE 1
#endif
#ifndef CONSUMER
#define CONSUMER 2
#endif
#ifndef STRATEGY
#define STRATEGY 0
#endif
#ifndef CANCELS
#define CANCELS 1
#endif
#ifndef REACTOR
#define REACTOR 1
#endif

/* A step that may resume the reacting caller. With SYNC_RESUME the resumption hands control to it in the middle
   of the step (a rendezvous, which a d_step cannot hold), so these steps are `atomic` there. */
#ifdef SYNC_RESUME
#define DSTEP atomic
#else
#define DSTEP d_step
#endif

/* Engine.phase */
#define OPEN 0
#define DRAINING 1
#define CANCELLING 2
#define CLOSED 3

/* Engine.shutdownRequest.mode (NONE: not requested) */
#define NONE 0
#define DRAIN 1
#define CANCEL 2

/* A task's state: Task.state, plus the states of its submitter before acceptance. */
#define T_NEW 0        /* not offered yet */
#define T_WAITING 1    /* its submitter waits in submitWaiters */
#define T_QUEUED 2     /* accepted, in the intake */
#define T_RUNNING 3    /* started: holds a slot */
#define T_DELIVERING 4 /* finished, its outcome waits for room in a full Pile: still holds its slot */
#define T_DONE 5
#define T_REJECTED 6   /* refused (Closed or QueueFull): never accepted */
#define T_WITHDRAWN 7  /* its submitter was interrupted while waiting: never accepted */

/* Outcome.Kind (K_NONE: Task.result undefined) */
#define K_NONE 0
#define K_OK 1
#define K_FAIL 2
#define K_DIE 3
#define K_INTERRUPTED 4
#define K_CANCELLED 5
#define K_EVICTED 6
#define K_DROPPED 7

/* ---- engine state */
byte phase = OPEN;
byte req = NONE;              /* shutdownRequest.mode */
bit graceFinite;              /* the drain's grace is finite (a "grace expired" event exists) */
bit graceExpired;             /* fires at most once */
/* Engine.intake, FIFO; `??` removes from the middle (LinkedList.remove). With a rate limit, it also stands for
   the key line that fresh tasks wait in for their budget: the engine bounds both together (held <= capacity). */
chan intake = [Q] of { byte };
chan waiters = [TASKS] of { byte }; /* Engine.submitWaiters, FIFO */
byte slots;                   /* Engine.slots */
byte budget = RATE;           /* the rate budget: one unit per start, refilled by the Timer */
bit signalled;                /* the dispatcher's wake-up flag (wake / waitSignal) */

/* ---- the executor-wide Pile (OutcomeBuffer) */
chan items = [TASKS] of { byte };   /* buffered outcomes; bounded by bufcap */
chan blocked = [TASKS] of { byte }; /* deliveries waiting for room (their release runs when they enter) */
byte bufcap = B;              /* TASKS stands for "unbounded": there are never more outcomes than tasks */
bit pileClosed;
bit consumerGone = (CONSUMER == 0); /* nobody reads the Pile */

/* ---- per task */
byte tstate[TASKS];
bit decided[TASKS];           /* Task.result is set: decided once. Its kind is checked when it is decided and not
                                 kept: nothing in the engine reads it afterwards, so success, failure and defect
                                 lead to the same state from there on. */
byte stopReason[TASKS];       /* Task.stopReason */
bit alive[TASKS];             /* its fiber has not stopped */
bit abandoned[TASKS];
bit offered[TASKS];           /* its outcome was handed to the Pile */
bit consumed[TASKS];          /* the consumer read its outcome */
bit hung[TASKS];              /* its fiber was interrupted and its finalizer never ends */
byte cancelsLeft = CANCELS;   /* caller cancels left (TaskHandle.cancel) */

/* ---- the reacting caller (REACTOR): the caller of the last task, RT, which holds the handle of task 0 */
#define RT (TASKS - 1)
#define SUPERSEDED 0
#define SUPERSEDE 1           /* submit(RT) (waits for room), then cancel task 0 */
#define RESUBMIT 2            /* wait for task 0's outcome, then submit(RT) */
#define ACCEPTED(t) (tstate[t] >= T_QUEUED && tstate[t] <= T_DONE)
byte reacts;                  /* what its caller does when resumed (0: nothing, or it already did) */
bit reactPending;             /* the outbox: it was resumed by a transition that has finished; its code runs next */
#ifdef SYNC_RESUME
chan resume = [0] of { byte }; /* the engine hands control to the resumed caller, in the middle of a transition */
chan resumed = [0] of { bit }; /* and gets it back when the caller's code suspends again */
byte saved_[7];               /* the transition's scratch variables, kept while the caller runs */
#endif

/* ---- counters (functions of the arrays above, kept for the properties) */
byte nAccepted, nFinished, nConsumed, nAlive, nAbandonedAlive, nHung;

/* scratch variables of atomic steps, always 0 between steps (so they add no states; not `hidden`, for BFS) */
byte t_, w_, v_, r_, c_, k_, m_, wait_;
byte held_;

#if RATE > 0
#define BUDGET_OK (budget > 0)
#define SPEND budget--
#else
#define BUDGET_OK 1
#define SPEND skip
#endif

#define accepting (phase == OPEN)
#define isIdle (len(intake) == 0 && slots == 0)
#ifdef BAD_ADMIT_AT_CAP
#define canStart (slots <= C && (phase == OPEN || phase == DRAINING) && len(intake) > 0 && BUDGET_OK)
#else
#define canStart (slots < C && (phase == OPEN || phase == DRAINING) && len(intake) > 0 && BUDGET_OK)
#endif
/* A drain with infinite grace waits, by design, for a fiber whose finalizer never ends (a cancel ends it). */
#define stuckDrain (req == DRAIN && !graceFinite && nHung > 0)

/* ---------------------------------------------------------------------------------------------------- */
/* engine.ts, as inline steps                                                                           */
/* ---------------------------------------------------------------------------------------------------- */

/* Engine.wake */
inline wake() { signalled = 1 }

/*
 * A waiting fiber of the reacting caller is resumed (its submitter handed a place, or the outcome it waits for
 * delivered). The rule: the wake-up goes to the outbox and is delivered once the transition has finished, so the
 * caller's code (`react`) is a step of its own, after this one. SYNC_RESUME breaks the rule: the caller's code
 * runs here and now, on the transition's half-updated state, and the transition goes on after it.
 */
inline resumeReactor() {
#ifdef SYNC_RESUME
  printf("EV resume %d 1\n", RT);
  saved_[0] = t_; saved_[1] = w_; saved_[2] = v_; saved_[3] = k_; saved_[4] = wait_; saved_[5] = held_; saved_[6] = r_;
  t_ = 0; w_ = 0; v_ = 0; k_ = 0; wait_ = 0; held_ = 0; r_ = 0; /* the caller's code has its own stack */
  resume!RT;
  resumed?0;
  t_ = saved_[0]; w_ = saved_[1]; v_ = saved_[2]; k_ = saved_[3]; wait_ = saved_[4]; held_ = saved_[5]; r_ = saved_[6];
  saved_[0] = 0; saved_[1] = 0; saved_[2] = 0; saved_[3] = 0; saved_[4] = 0; saved_[5] = 0; saved_[6] = 0
#else
  printf("EV resume %d 0\n", RT);
  reactPending = 1
#endif
}

/* Engine.accept */
inline accept(t) {
  assert(phase == OPEN && req == NONE);              /* I6: nothing is accepted once shutdown began */
  assert(tstate[t] == T_NEW || tstate[t] == T_WAITING); /* I2: a withdrawn submitter is never accepted */
  assert(len(intake) < Q);                           /* I13 */
  tstate[t] = T_QUEUED;
  intake!t;
  nAccepted++;
  printf("EV accept %d\n", t);
  wake()
}

/* Engine.admitWaiters: freed places go to waiting submitters, first come first served. */
inline admitWaiters() {
  do
  :: len(intake) < Q && len(waiters) > 0 && phase == OPEN ->
     waiters?w_;
     accept(w_);         /* then waiter.resume(succeed): the submitter sees tstate != T_WAITING */
#if REACTOR
     if
     :: w_ == RT && reacts == SUPERSEDE -> resumeReactor()
     :: else -> skip
     fi
#else
     skip
#endif
  :: else -> break
  od;
  w_ = 0
}

/* Engine.release: the slot is returned once the outcome is in the Pile (intake stands for intake + lines). */
inline release(t) {
  printf("EV release %d\n", t);
  tstate[t] = T_DONE;
#ifdef BAD_EARLY_RELEASE
  if
  :: stopReason[t] == K_NONE -> slots--
  :: else -> skip                  /* already freed by stop */
  fi;
#else
  slots--;
#endif
#ifndef BAD_NO_WAKE
  if
  :: len(intake) > 0 || phase != OPEN -> wake()
  :: else -> skip
  fi
#endif
}

/* OutcomeBuffer.refill: blocked deliveries enter the buffer in order; each one's release runs. */
inline refill() {
  do
  :: len(blocked) > 0 && len(items) < bufcap ->
     blocked?r_;
     items!r_;
     if
     :: tstate[r_] == T_DELIVERING -> release(r_)
     :: else -> skip     /* delivered with `noop`: it held no slot */
     fi
  :: else -> break
  od;
  r_ = 0
}

/* OutcomeBuffer.unbound */
inline unbound() { bufcap = TASKS; refill() }

/* OutcomeBuffer.offer: into the buffer if there is room and nobody is blocked before it, else blocked. */
#define roomInPile (len(items) < bufcap && len(blocked) == 0)

/* Engine.finish: records the outcome once (I1, I18), releases what the task holds, delivers the outcome. */
inline finish(t, k) {
#ifndef BAD_LATE_OVERWRITE
  if
  :: decided[t] -> skip
  :: else ->
#else
  if
  :: true ->
#endif
     assert(tstate[t] == T_QUEUED || tstate[t] == T_RUNNING || tstate[t] == T_DONE); /* I2: only accepted tasks */
     held_ = (tstate[t] == T_RUNNING);
     if
     :: tstate[t] == T_QUEUED && intake??[eval(t)] -> intake??eval(t); admitWaiters()
     :: else -> skip
     fi;
     if
     :: !decided[t] -> nFinished++
     :: else -> skip
     fi;
     decided[t] = 1;
     printf("EV finish %d %d\n", t, k);
     /* I4, I15: a task the executor stopped is recorded with the stop's kind, never as its own exit */
     assert(stopReason[t] == K_NONE || k == stopReason[t]);
     assert(k != K_NONE);
     assert(!offered[t]);              /* I1: an outcome is delivered once, never twice */
     offered[t] = 1;
     if
     :: held_ ->
        if
        :: roomInPile -> items!t; release(t)
        :: else -> blocked!t; tstate[t] = T_DELIVERING; printf("EV blocked %d\n", t)
        fi
     :: else ->
        tstate[t] = T_DONE;
        if
        :: roomInPile -> items!t
        :: else -> blocked!t
        fi
     fi;
#if REACTOR
     /* Task.waiters: the outcome goes to whoever waits for it */
     if
     :: t == SUPERSEDED && reacts == RESUBMIT -> resumeReactor()
     :: else -> skip
     fi
#else
     skip
#endif
  fi;
  held_ = 0
}

/* Engine.stop on a running task: sets stopReason and interrupts its fiber (the fiber sees stopReason). */
inline interruptRunning(t, reason) {
  printf("EV interrupt %d %d\n", t, reason);
  stopReason[t] = reason;
#ifdef BAD_EARLY_RELEASE
  slots--;                           /* frees the slot when the interruption is asked, not when the fiber stops */
  wake();
#endif
  skip
}

/* Engine.stop (TaskHandle.cancel is stop(task, "cancelled")) */
inline stop(t, reason) {
  if
  :: tstate[t] == T_QUEUED -> finish(t, reason)
  :: tstate[t] == T_RUNNING && stopReason[t] == K_NONE -> interruptRunning(t, reason)
  :: else -> skip
  fi
}

/* Engine.admitNext (one admission) + Engine.start (+ attach): one task leaves the intake and its fiber starts. */
inline startOne() {
  intake?t_;
#ifdef SYNC_RESUME
  printf("EV dequeued %d\n", t_);
#endif
  admitWaiters();                    /* the place it leaves goes to a waiting submitter: a resumption */
  /* I1: the task it starts is still queued and has no outcome (not cancelled while half moved) */
  assert(tstate[t_] == T_QUEUED && !decided[t_] && !alive[t_]);
  printf("EV start %d\n", t_);
  tstate[t_] = T_RUNNING;
  slots++;
  SPEND;
  alive[t_] = 1;
  nAlive++;
  assert(slots <= C);                /* I10 */
  assert(nAlive <= C);               /* I10: fibers really alive, abandoned ones included */
  t_ = 0
}

/* Engine.onAttemptExit: the fiber stopped with its own exit `k`; the kind is the stop reason if there is one. */
inline onAttemptExit(t, k) {
  printf("EV exit %d %d\n", t, k);
  alive[t] = 0;
  nAlive--;
  if
  :: abandoned[t] -> abandoned[t] = 0; nAbandonedAlive--
  :: else -> skip
  fi;
  if
  :: stopReason[t] != K_NONE -> k = stopReason[t]
  :: else -> skip
  fi;
  if
#ifndef BAD_LATE_OVERWRITE
  :: tstate[t] != T_RUNNING -> skip  /* abandoned by a shutdown that timed out: its outcome is recorded */
#endif
#ifdef BAD_FORGET_INTERRUPTED
  :: tstate[t] == T_RUNNING && stopReason[t] != K_NONE -> tstate[t] = T_DONE; slots--; wake()
  :: tstate[t] == T_RUNNING && stopReason[t] == K_NONE -> finish(t, k)
#else
  :: else -> finish(t, k)
#endif
  fi;
#ifndef BAD_EARLY_RELEASE
  stopReason[t] = K_NONE;            /* no longer read: the outcome holds the kind */
#endif
  k = 0
}

/* Engine.requestShutdown: synchronous and idempotent; a cancel cuts a drain short. */
inline requestShutdown(mode) {
  if
  :: phase == CLOSED -> skip
  :: phase != CLOSED && req != NONE ->
     if
     :: mode == CANCEL && req == DRAIN -> printf("EV shutdown %d 2\n", mode); req = CANCEL; wake()
     :: else -> skip
     fi
  :: else ->
     printf("EV shutdown %d %d\n", mode, graceFinite);
     req = mode;
     phase = DRAINING;
     do
     :: len(waiters) > 0 ->
        waiters?w_;
        assert(tstate[w_] == T_WAITING);   /* I2 */
        tstate[w_] = T_REJECTED;           /* waiter.resume(fail(Closed)) */
        printf("EV refused %d 0\n", w_)
     :: else -> break
     od;
     w_ = 0;
#ifndef BAD_NO_UNBOUND
     unbound();                            /* I14: the Pile's bound is lifted */
#endif
     wake()
  fi
}

/* Engine.cancelAll */
inline cancelAll() {
  /* taken out of the intake first, so that finishing them admits no waiting submitter */
  do
  :: len(intake) > 0 ->
     intake?t_;
     assert(tstate[t_] == T_QUEUED && !alive[t_]); /* I8: a queued task never ran */
     finish(t_, K_INTERRUPTED)
  :: else -> break
  od;
  t_ = 0;
  do
  :: t_ < TASKS ->
     if
     :: tstate[t_] == T_RUNNING && stopReason[t_] == K_NONE -> interruptRunning(t_, K_INTERRUPTED)
     :: else -> skip
     fi;
     t_++
  :: else -> break
  od;
  t_ = 0;
#ifndef BAD_NO_UNBOUND
  unbound()
#else
  skip
#endif
}

/* Engine.abandonRunning: after the finalizer deadline, tasks whose fibers did not stop are recorded. */
inline abandonRunning() {
  t_ = 0;
  do
  :: t_ < TASKS ->
     if
     :: tstate[t_] == T_RUNNING ->
        printf("EV abandon %d\n", t_);
        abandoned[t_] = 1;
        nAbandonedAlive++;
        k_ = K_INTERRUPTED;
        if
        :: stopReason[t_] != K_NONE -> k_ = stopReason[t_]
        :: else -> skip
        fi;
        finish(t_, k_);
        k_ = 0
     :: else -> skip
     fi;
     t_++
  :: else -> break
  od;
  t_ = 0
}

/* Engine.close (pile.close unbounds the buffer and ends the Pile once it is read) */
inline close() {
  printf("EV close\n");
  phase = CLOSED;
  pileClosed = 1;
  unbound();
  /* I1, I7, I8: the postcondition of every shutdown */
  assert(len(intake) == 0 && len(waiters) == 0 && slots == 0);
  assert(nAlive == nAbandonedAlive);      /* nothing runs but abandoned fibers */
  assert(nFinished == nAccepted);
  t_ = 0;
  do
  :: t_ < TASKS ->
     assert(tstate[t_] == T_NEW || tstate[t_] == T_DONE || tstate[t_] == T_REJECTED || tstate[t_] == T_WITHDRAWN);
     assert((tstate[t_] == T_DONE) == decided[t_]); /* exactly the accepted tasks have an outcome */
     assert((tstate[t_] == T_DONE) == offered[t_]);
     t_++
  :: else -> break
  od;
  t_ = 0
}

/* Engine.offer (tryOffer, then waitToOffer) of task t, whose submitter saw `seen` in its first step (read by
   BAD_STALE_PHASE only: tryOffer checks the phase again); wait_: `submit` (waits for room) or `trySubmit`. */
inline offer(t, seen) {
#ifdef BAD_STALE_PHASE
  if
  :: !seen ->
#else
  if
  :: phase != OPEN ->
#endif
     tstate[t] = T_REJECTED;                       /* Closed */
     printf("EV refused %d 0\n", t)
  :: else ->
     if
     :: len(intake) < Q && len(waiters) == 0 -> accept(t)
     :: else ->
#if STRATEGY == 1
        intake?<v_>;                               /* sliding: the oldest queued task is evicted */
        printf("EV slides %d %d\n", t, v_);
        finish(v_, K_EVICTED);
        v_ = 0;
        accept(t)
#elif STRATEGY == 2
        tstate[t] = T_QUEUED;                      /* dropping: accepted and ended at once */
        nAccepted++;
        finish(t, K_DROPPED)
#else
        if
        :: wait_ -> waiters!t; tstate[t] = T_WAITING; printf("EV waits %d\n", t)
        :: else -> tstate[t] = T_REJECTED; printf("EV refused %d 1\n", t) /* QueueFull */
        fi
#endif
     fi
  fi;
#ifdef BAD_STALE_PHASE
  if
  :: seen && phase != OPEN -> printf("EV stale %d\n", t)  /* shutdown came between its two steps */
  :: else -> skip
  fi;
#endif
  skip
}

#if REACTOR
/*
 * The reacting caller's code once it is resumed: ordinary user code that re-enters the engine at once.
 * SUPERSEDE: `const r = yield* ex.submit(R); yield* p.cancel` (its submit was accepted: cancel the task it
 * supersedes). RESUBMIT: `yield* p.outcome; yield* ex.submit(R)` (task 0's outcome came: submit again).
 */
inline react(t) {
  if
  :: reacts == SUPERSEDE ->
     reacts = 0;
     printf("EV supersede %d %d\n", t, SUPERSEDED);
     stop(SUPERSEDED, K_CANCELLED)
  :: reacts == RESUBMIT ->
     reacts = 0;
     printf("EV resubmit %d %d\n", t, SUPERSEDED);
     wait_ = 1;
     offer(t, accepting);
     wait_ = 0
  fi
}
#endif

/* ---------------------------------------------------------------------------------------------------- */
/* processes                                                                                            */
/* ---------------------------------------------------------------------------------------------------- */

/*
 * One task: first its submitter, in two steps (it sees the executor open, then offers: a shutdown can come in
 * between), with `submit` (waits for room) or `trySubmit` (QueueFull); then its caller, who may cancel it
 * through its handle; then its fiber, once the dispatcher started it.
 *
 * With REACTOR, the last task's caller (RT) may instead react to being resumed, once task 0 was accepted (it
 * holds task 0's handle): SUPERSEDE submits RT with `submit` and, once accepted (at once, or when a waiting
 * submitter is handed a freed place), cancels task 0; RESUBMIT waits for task 0's outcome, then submits RT.
 * Its code after the resumption is its own step (`react`), which the wake-up in the outbox (`reactPending`)
 * enables once the transition that resumed it has finished (SYNC_RESUME: inside that transition instead).
 */
active [TASKS] proctype Task() {
  byte t = _pid;
  bit sawOpen;
  assert(t < TASKS);
#if REACTOR
  if
  :: atomic {
       t == RT && ACCEPTED(SUPERSEDED) ->
       reacts = SUPERSEDE;
       printf("EV reacts %d %d\n", t, SUPERSEDE);
       DSTEP {
         wait_ = 1;
         offer(t, accepting);
         if
         :: tstate[t] == T_QUEUED || tstate[t] == T_DONE -> reactPending = 1 /* accepted at once: it goes on */
         :: else -> skip                                /* waits for room, or refused: no handle, no cancel */
         fi;
         wait_ = 0
       }
     };
     goto end_task
  :: atomic {
       t == RT && (tstate[SUPERSEDED] == T_QUEUED || tstate[SUPERSEDED] == T_RUNNING) ->
       reacts = RESUBMIT;                               /* waits for task 0's outcome (Task.waiters) */
       printf("EV reacts %d %d\n", t, RESUBMIT)
     };
     goto end_task
  :: sawOpen = accepting                                /* a caller like the others: step 1 below */
  fi;
#else
  /* step 1: the caller sees the executor accepting */
  sawOpen = accepting;
#endif
  /* step 2: Engine.offer (tryOffer, then waitToOffer) */
  atomic {
#if STRATEGY == 0
    if
    :: wait_ = 1                                       /* submit: waits for room */
    :: wait_ = 0                                       /* trySubmit: QueueFull when full */
    fi;
#endif
    DSTEP {
      offer(t, sawOpen);
      sawOpen = 0;
      wait_ = 0
    }
  }
  /* from here on, everything that can happen to the task; blocked here is a valid end */
end_task:
  do
  /* the waiting submitter is interrupted: waitToOffer's finalizer (submitWaiters.remove). Once the hand-off
     (admitWaiters) has happened, an interruption changes nothing in the engine: the task stays accepted. */
  :: d_step {
       tstate[t] == T_WAITING ->
#ifndef BAD_WAITER_LEAK
       waiters??eval(t);
#endif
       tstate[t] = T_WITHDRAWN;
       printf("EV withdrawn %d\n", t)
     }
  /* the caller cancels it (TaskHandle.cancel = Engine.stop(task, "cancelled")), while queued or running */
  :: DSTEP {
       cancelsLeft > 0 && (tstate[t] == T_QUEUED || (tstate[t] == T_RUNNING && stopReason[t] == K_NONE)) ->
       cancelsLeft--;
       printf("EV cancel %d\n", t);
       stop(t, K_CANCELLED)
     }
  /* its fiber stops: by itself (success, failure, defect), or because it was interrupted (finalizers done) */
  :: atomic {
       alive[t] && !hung[t] ->
       if
       :: k_ = K_OK
       :: k_ = K_FAIL
       :: k_ = K_DIE
       :: stopReason[t] != K_NONE -> k_ = K_INTERRUPTED
       fi;
       DSTEP { onAttemptExit(t, k_) }
     }
  /* or, interrupted, its finalizer never ends */
  :: d_step { alive[t] && !hung[t] && stopReason[t] != K_NONE -> hung[t] = 1; nHung++; printf("EV hang %d\n", t) }
#if REACTOR
  /* the reacting caller was resumed: the wake-up is delivered, its code runs (one step: it suspends again in
     `cancel`'s wait for the outcome, or in `submit`) */
  :: DSTEP { reactPending && t == RT -> reactPending = 0; react(t) }
#ifdef SYNC_RESUME
  /* SYNC_RESUME: the same code, run by the transition that resumes it, which waits for it to suspend again */
  :: atomic { resume?eval(t) -> react(t); resumed!0 }
#endif
#endif
  od
}

/*
 * The dispatcher fiber: Engine.run, then Engine.shutdownProtocol. Each step runs from a wake-up to the next
 * suspension, as the fiber does (it suspends only in waitSignal / waitUntil).
 */
#define D_RUN 0      /* waitSignal, before shutdown */
#define D_DRAIN 1    /* waitUntil(graceEnd) in the drain */
#define D_CANCEL 2   /* waitUntil(finalizerEnd): running fibers were interrupted */
#define D_DONE 3
#define S_RUN 1
#define S_DRAIN 2
#define S_CANCEL 3
#define S_WAITF 4
#define S_FINAL 5
#define S_PUMP 6
byte dmode = D_RUN;
byte ds_;

inline pump() {
  do
  :: canStart -> startOne()
  :: else -> break
  od
}

active proctype Dispatcher() {
end_dispatcher:
  do
  :: atomic {
       ((dmode == D_RUN && signalled) || (dmode == D_DRAIN && (signalled || (graceFinite && !graceExpired))) || dmode == D_CANCEL) ->
       if
       :: signalled ->                                                 /* woken (wake) */
          signalled = 0;
          if
          :: dmode == D_RUN -> ds_ = S_RUN
          :: dmode == D_DRAIN -> ds_ = S_DRAIN
          :: else -> ds_ = S_WAITF
          fi
       :: dmode == D_DRAIN && graceFinite && !graceExpired ->
          graceExpired = 1; ds_ = S_DRAIN;                             /* the grace period ended (once) */
          printf("EV grace\n")
       :: dmode == D_CANCEL -> ds_ = S_FINAL;                          /* the finalizerTimeout deadline passed */
          printf("EV deadline\n")
       fi;
       DSTEP {
       do
       :: ds_ == S_RUN ->                                              /* run: pump, unless shutdown was asked */
          if
          :: req == NONE -> ds_ = S_PUMP
          :: req == DRAIN -> ds_ = S_DRAIN
          :: req == CANCEL -> ds_ = S_CANCEL
          fi
       :: ds_ == S_DRAIN ->                                            /* the drain loop's head */
          if
          :: req != DRAIN || isIdle -> ds_ = S_CANCEL
          :: else -> ds_ = S_PUMP
          fi
       :: ds_ == S_PUMP ->
          pump();
          if
          :: req == NONE -> break                                      /* then waitSignal */
          :: req != NONE && (isIdle || graceExpired) -> ds_ = S_CANCEL  /* the drain ends */
          :: else -> dmode = D_DRAIN; break                             /* then waitUntil(graceEnd) */
          fi
       :: ds_ == S_CANCEL ->
          if
          :: req == DRAIN && isIdle ->                                  /* I7: the drain's postcondition */
             assert(len(intake) == 0 && nAlive == 0 && slots == 0 && nFinished == nAccepted && len(waiters) == 0)
          :: else -> skip
          fi;
          phase = CANCELLING;
          printf("EV cancelAll\n");
          cancelAll();
          ds_ = S_WAITF
       :: ds_ == S_WAITF ->                                            /* while (slots > 0) waitUntil(...) */
          if
          :: slots == 0 -> ds_ = S_FINAL
          :: else -> dmode = D_CANCEL; break
          fi
       :: ds_ == S_FINAL ->
          abandonRunning();
          close();
          dmode = D_DONE;
          break
       od;
       ds_ = 0
       }
     }
  :: dmode == D_DONE -> break
  od
}

#if CONSUMER
/*
 * The Pile's consumer: pulls everything buffered at once (OutcomeBuffer.pull), at its own pace (any interleaving:
 * slow or fast). With CONSUMER == 2 it may also be absent: it never reads at all.
 */
active proctype Consumer() {
#if CONSUMER == 2
  if
  :: skip
  :: consumerGone = 1; printf("EV noConsumer\n"); goto end_gone
  fi;
#endif
end_consumer:
  do
  :: d_step {
       len(items) > 0 ->
       do
       :: len(items) > 0 ->
          items?c_;
          assert(!consumed[c_]);                      /* I1: never delivered twice */
          consumed[c_] = 1;
          printf("EV read %d\n", c_);
          nConsumed++
       :: else -> break
       od;
       c_ = 0;
#ifndef BAD_PULL_NO_REFILL
       refill()
#else
       skip                                           /* blocked deliveries wait for a shutdown */
#endif
     }
  :: atomic { len(items) == 0 && pileClosed -> break } /* the Pile ends */
  od;
  assert(nConsumed == nAccepted);                     /* I1: every accepted task's outcome was read, once */
end_gone:
  skip
}
#endif

#if RATE > 0
/* Time passing for the rate budget: one unit comes back at a time, and the dispatcher is woken. */
active proctype Timer() {
end_timer:
  do
  :: d_step { budget < RATE -> budget++; wake() }
  od
}
#endif

/*
 * Executor.shutdown (or the scope closing): requestShutdown, then wait until closed. It may never come, come
 * once, or twice (the second call in either mode: a cancel cuts a drain short, a drain changes nothing).
 */
active proctype Shutdowner() {
  byte calls;
  do
  :: calls == 0 -> goto end_never                    /* no shutdown in this run */
  :: calls < 2 ->
     atomic {
       if
       :: m_ = DRAIN;
          if
          :: req == NONE -> graceFinite = 1
          :: else -> skip
          fi
       :: m_ = DRAIN;                                  /* grace: Infinity */
          if
          :: req == NONE -> graceFinite = 0
          :: else -> skip
          fi
       :: m_ = CANCEL
       fi;
       d_step {
         requestShutdown(m_);
         m_ = 0;
         calls++
       }
     }
  :: calls > 0 -> break
  od;
  /* shutdownAndWait: returns once closed; a drain with infinite grace on a hung fiber waits forever, as asked */
  (phase == CLOSED || stuckDrain);
end_never:
  skip
}

/* I10, I13 and the intake hand-off, in every state: the monitor can step exactly when one of them is false. */
#define INVARIANT (slots <= C && nAlive <= C && nAlive - nAbandonedAlive <= slots && len(intake) <= Q && !(len(waiters) > 0 && len(intake) < Q && phase == OPEN))
active proctype Invariants() {
end_invariants:
  atomic {
    !INVARIANT ->
    assert(slots <= C);                                    /* I10: slots in use never exceed the cap */
    assert(nAlive <= C);                                   /* I10: fibers really running (abandoned ones too) */
    assert(nAlive - nAbandonedAlive <= slots);             /* I10: a task keeps its slot until its fiber stops */
    assert(len(intake) <= Q);                              /* I13 */
    assert(!(len(waiters) > 0 && len(intake) < Q && phase == OPEN)) /* I2, I13: no waiting while there is room */
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* liveness (checked with weak fairness: pan -a -f -N name)                                             */
/* ---------------------------------------------------------------------------------------------------- */

/* Shutdown ends (I7, I8, I14), except a drain with infinite grace waiting on a fiber that never stops. */
ltl drain_terminates { [] ((req == DRAIN) -> <> (phase == CLOSED || stuckDrain)) }
ltl cancel_terminates { [] ((req == CANCEL) -> <> (phase == CLOSED)) }
/* I16: a task that may start does start (or can no longer start: shutdown, cancel). */
ltl progress { [] (canStart -> <> !canStart) }
/* I1: with a consumer, every accepted task's outcome is eventually read, and nobody waits forever to submit;
   unless the consumer is absent, or a finalizer hangs while no shutdown comes (the hung task keeps its slot
   until a shutdown abandons it) or while a drain with infinite grace waits for it (stuckDrain). With finitely
   many tasks each term changes finitely often, so "infinitely often" here means "eventually, for good".
   (Written []<> rather than <>[]: with weak fairness, pan misses a <>[] violation that shows only as a final
   state repeated forever.) */
ltl delivered { [] <> ((nConsumed == nAccepted && len(waiters) == 0) || consumerGone || (req == NONE && nHung > 0) || stuckDrain) }
