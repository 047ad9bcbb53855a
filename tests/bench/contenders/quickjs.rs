//! **Q**: the action in JavaScript on QuickJS (rquickjs) — a fresh `Runtime` and
//! `Context` per action with a memory limit, a stack limit and an interrupt handler,
//! host functions as globals. **Q-warm** keeps one context per worker thread and only
//! calls `run` again: it does not isolate runs (globals survive), so it is a separate row.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::{CatchResultExt as _, Context, Ctx, Function, Runtime};

use super::{BoxFuture, Contender, Raw};

/// Memory a fresh JS runtime may allocate (as Fluxo's runs: 16 MiB).
const MEMORY_LIMIT: usize = 16 << 20;
/// Native stack the interpreter may use.
const STACK_LIMIT: usize = 512 << 10;
/// Wall-clock budget, checked by the interrupt handler.
const DEADLINE: Duration = Duration::from_secs(5);

type Effects = Rc<RefCell<Vec<Vec<String>>>>;

/// The QuickJS contender; `warm` reuses a context per thread.
#[derive(Debug)]
pub struct QuickJs {
    event: String,
    warm: bool,
}

impl QuickJs {
    /// A fresh runtime and context per action.
    #[must_use]
    pub fn fresh(event: String) -> Self {
        Self { event, warm: false }
    }

    /// One context per worker thread, reused.
    #[must_use]
    pub fn warm(event: String) -> Self {
        Self { event, warm: true }
    }

    fn call(&self) -> anyhow::Result<Raw> {
        if self.warm {
            WARM.with(|warm| {
                let mut warm = warm.borrow_mut();
                if warm.is_none() {
                    *warm = Some(Sandbox::new()?);
                }
                match warm.as_ref() {
                    Some(sandbox) => sandbox.call(&self.event),
                    None => anyhow::bail!("no warm sandbox"),
                }
            })
        } else {
            Sandbox::new()?.call(&self.event)
        }
    }
}

thread_local! {
    static WARM: RefCell<Option<Sandbox>> = const { RefCell::new(None) };
}

/// A JS runtime and context with the action loaded and the host globals installed.
struct Sandbox {
    // Field order: the context must go before its runtime.
    context: Context,
    _runtime: Runtime,
    effects: Effects,
    /// When the current call must stop; each call sets its own (a warm sandbox outlives
    /// many deadlines).
    deadline: Rc<Cell<Instant>>,
}

impl Sandbox {
    fn new() -> anyhow::Result<Self> {
        let runtime = Runtime::new()?;
        runtime.set_memory_limit(MEMORY_LIMIT);
        runtime.set_max_stack_size(STACK_LIMIT);
        let deadline = Rc::new(Cell::new(Instant::now() + DEADLINE));
        let watched = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || Instant::now() > watched.get())));
        let context = Context::full(&runtime)?;
        let effects = Effects::default();
        context.with(|ctx| install(&ctx, &effects))?;
        Ok(Self {
            context,
            _runtime: runtime,
            effects,
            deadline,
        })
    }

    fn call(&self, event: &str) -> anyhow::Result<Raw> {
        self.deadline.set(Instant::now() + DEADLINE);
        let output = self.context.with(|ctx| -> anyhow::Result<String> {
            let run: Function = ctx.globals().get("run")?;
            run.call::<_, String>((event,))
                .catch(&ctx)
                .map_err(|error| anyhow::anyhow!("the action threw: {error}"))
        })?;
        Ok((output, self.effects.take()))
    }
}

/// Installs `setField` and `tag` and evaluates the action's source.
fn install(ctx: &Ctx<'_>, effects: &Effects) -> anyhow::Result<()> {
    let sink = effects.clone();
    let set_field = Function::new(ctx.clone(), move |name: String, value: String| {
        sink.borrow_mut()
            .push(vec!["set_field".to_owned(), name, value]);
    })?;
    let sink = effects.clone();
    let tag = Function::new(ctx.clone(), move |tag: String| {
        sink.borrow_mut().push(vec!["add_tag".to_owned(), tag]);
    })?;
    ctx.globals().set("setField", set_field)?;
    ctx.globals().set("tag", tag)?;
    ctx.eval::<(), _>(fluxo_triage::TRIAGE_JS)
        .catch(ctx)
        .map_err(|error| anyhow::anyhow!("loading the action: {error}"))
}

impl Contender for QuickJs {
    fn label(&self) -> &str {
        if self.warm { "Q-warm" } else { "Q" }
    }

    fn isolation(&self) -> &'static str {
        if self.warm {
            "none between runs (shared context)"
        } else {
            "JS runtime + memory limit + interrupt"
        }
    }

    fn once(&self) -> BoxFuture<'_, anyhow::Result<Raw>> {
        Box::pin(async move { self.call() })
    }
}
