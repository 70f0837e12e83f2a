// SPDX-License-Identifier: GPL-2.0
/*
 * OoH guest module core: /dev/ooh-ctl, one tracker (and one ring, exported
 * through its own UIO device) per open file, per-thread logging switched at
 * context switch by preempt notifiers, and the drain of the hypervisor's
 * entries into the trackers' rings.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/kref.h>
#include <linux/magic.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/sched/coredump.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/task_work.h>
#include <linux/tracepoint.h>
#include <linux/uaccess.h>
#include <linux/uio_driver.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include <ooh/ooh_ring.h>

#include "ooh.h"

#define OOH_DRAIN_INTERVAL_MS 10
#define OOH_ATTACH_TIMEOUT    (2 * HZ)
#define OOH_DETACH_TIMEOUT    (2 * HZ)

enum ooh_thread_state {
	OOH_THREAD_QUEUED,   /* attach work queued, not run yet */
	OOH_THREAD_ATTACHED, /* notifier registered on the task */
	OOH_THREAD_DETACHED, /* notifier removed */
};

/* One attached thread of a tracked process. */
struct ooh_thread {
	struct preempt_notifier pn;
	struct callback_head attach_work;
	struct callback_head detach_work;
	struct task_struct *task; /* reference held */
	struct list_head node;	  /* tracker's threads, or the graveyard */
	struct kref ref;	  /* list + one per queued work */
	u32 tag;
	u32 mode; /* 0 once the tracker is gone */
	int state;
	bool registered;
};

struct ooh_tracker {
	u32 tag;
	u32 mode;
	struct pid *tgid;
	struct ooh_ring_header *hdr; /* vmalloc_user, mapped by UIO */
	u64 *entries;
	size_t ring_bytes;
	struct uio_info uio;
	bool uio_registered;
	spinlock_t lock; /* threads, from the fork probe too */
	struct list_head threads;
	struct list_head node; /* ooh_tracker_list */
	atomic_t lost_pending; /* an mm sharer we cannot log appeared */
	u64 notified_head;
};

static DEFINE_MUTEX(ooh_lock);	 /* trackers, transport, drains */
static DEFINE_IDR(ooh_trackers); /* tag -> tracker */
static struct ooh_transport __rcu *ooh_active;
static LIST_HEAD(ooh_graveyard);    /* threads waiting for their task to die */
static LIST_HEAD(ooh_tracker_list); /* for the fork probe */
static DEFINE_SPINLOCK(ooh_tracker_list_lock);
static struct tracepoint *ooh_tp_fork;
static DECLARE_WAIT_QUEUE_HEAD(ooh_wq);
static struct miscdevice ooh_misc;
static struct delayed_work ooh_drain_work;

/* ---- per-thread logging switch ---- */

static void ooh_logging_on(struct ooh_thread *th, int cpu)
{
	struct ooh_transport *t;
	u32 mode = READ_ONCE(th->mode);

	rcu_read_lock();
	t = rcu_dereference(ooh_active);
	if (t && mode)
		t->ops->vcpu_enable(t, cpu, th->tag, mode);
	rcu_read_unlock();
}

static void ooh_logging_off(int cpu)
{
	struct ooh_transport *t;

	rcu_read_lock();
	t = rcu_dereference(ooh_active);
	if (t)
		t->ops->vcpu_disable(t, cpu);
	rcu_read_unlock();
}

static void ooh_sched_in(struct preempt_notifier *pn, int cpu)
{
	ooh_logging_on(container_of(pn, struct ooh_thread, pn), cpu);
}

static void ooh_sched_out(struct preempt_notifier *pn, struct task_struct *next)
{
	ooh_logging_off(smp_processor_id());
}

static struct preempt_ops ooh_preempt_ops = {
	.sched_in = ooh_sched_in,
	.sched_out = ooh_sched_out,
};

static void ooh_thread_free(struct kref *ref)
{
	struct ooh_thread *th = container_of(ref, struct ooh_thread, ref);

	put_task_struct(th->task);
	kfree(th);
	module_put(THIS_MODULE);
}

static void ooh_thread_put(struct ooh_thread *th)
{
	kref_put(&th->ref, ooh_thread_free);
}

/* Runs in the tracked thread itself, before it next returns to user mode. */
static void ooh_attach_fn(struct callback_head *cb)
{
	struct ooh_thread *th = container_of(cb, struct ooh_thread, attach_work);

	preempt_disable();
	if (READ_ONCE(th->state) == OOH_THREAD_QUEUED) {
		preempt_notifier_register(&th->pn);
		th->registered = true;
		ooh_logging_on(th, smp_processor_id());
		WRITE_ONCE(th->state, OOH_THREAD_ATTACHED);
	}
	preempt_enable();
	wake_up_all(&ooh_wq);
	ooh_thread_put(th);
}

static void ooh_detach_fn(struct callback_head *cb)
{
	struct ooh_thread *th = container_of(cb, struct ooh_thread, detach_work);

	preempt_disable();
	if (th->registered) {
		preempt_notifier_unregister(&th->pn);
		th->registered = false;
		ooh_logging_off(smp_processor_id());
	}
	WRITE_ONCE(th->state, OOH_THREAD_DETACHED);
	preempt_enable();
	wake_up_all(&ooh_wq);
	ooh_thread_put(th);
}

/* Called with tr->lock held. */
static bool ooh_thread_known(struct ooh_tracker *tr, struct task_struct *t)
{
	struct ooh_thread *th;

	list_for_each_entry(th, &tr->threads, node) if (th->task == t) return true;
	return false;
}

static struct ooh_thread *ooh_thread_alloc(struct ooh_tracker *tr, struct task_struct *t, gfp_t gfp)
{
	struct ooh_thread *th = kzalloc(sizeof(*th), gfp);

	if (!th)
		return NULL;
	__module_get(THIS_MODULE);
	preempt_notifier_init(&th->pn, &ooh_preempt_ops);
	init_task_work(&th->attach_work, ooh_attach_fn);
	init_task_work(&th->detach_work, ooh_detach_fn);
	kref_init(&th->ref);
	th->task = t;
	th->tag = tr->tag;
	th->mode = tr->mode;
	th->state = OOH_THREAD_QUEUED;
	return th;
}

/*
 * sched_process_fork runs in the parent after copy_process() and before the
 * child is first woken: nobody walks the child's notifier list yet, so the
 * notifier can be put there directly and the new thread logs from its first
 * instruction. A task that shares the mm but is not a thread of the target
 * (CLONE_VM without CLONE_THREAD, vfork) is not logged: the epoch is lost.
 */
static void ooh_on_fork(void *data, struct task_struct *parent, struct task_struct *child)
{
	struct ooh_tracker *tr;
	struct ooh_thread *th;

	if (list_empty(&ooh_tracker_list) || !child->mm)
		return;
	spin_lock(&ooh_tracker_list_lock);
	list_for_each_entry(tr, &ooh_tracker_list, node)
	{
		if (task_tgid(child) != tr->tgid) {
			if (child->mm == parent->mm && task_tgid(parent) == tr->tgid)
				atomic_set(&tr->lost_pending, 1);
			continue;
		}
		th = ooh_thread_alloc(tr, child, GFP_ATOMIC);
		if (!th) {
			atomic_set(&tr->lost_pending, 1);
			continue;
		}
		get_task_struct(child);
		hlist_add_head(&th->pn.link, &child->preempt_notifiers);
		th->registered = true;
		th->state = OOH_THREAD_ATTACHED;
		spin_lock(&tr->lock);
		list_add_tail(&th->node, &tr->threads);
		tr->hdr->threads++;
		spin_unlock(&tr->lock);
	}
	spin_unlock(&ooh_tracker_list_lock);
}

/*
 * Queues the attach of @t (reference passed in). The notifier can only be
 * added by the task itself, so the task runs the work before it next returns
 * to user mode (TWA_SIGNAL wakes it from interruptible sleeps).
 */
static int ooh_attach_task(struct ooh_tracker *tr, struct task_struct *t)
{
	struct ooh_thread *th;
	int ret;

	th = ooh_thread_alloc(tr, t, GFP_KERNEL);
	if (!th) {
		put_task_struct(t);
		return -ENOMEM;
	}
	kref_get(&th->ref);
	ret = task_work_add(t, &th->attach_work, TWA_SIGNAL);
	if (ret) {
		/* Past exit_task_work: its mm is gone, it writes nothing more. */
		ooh_thread_put(th);
		ooh_thread_put(th);
		return 0;
	}
	spin_lock(&tr->lock);
	list_add_tail(&th->node, &tr->threads);
	tr->hdr->threads++;
	spin_unlock(&tr->lock);
	return 1;
}

/* Attaches every thread of the target not attached yet; returns how many. */
static int ooh_attach_new_threads(struct ooh_tracker *tr)
{
	struct task_struct *leader, *t, **found;
	int n = 0, cap, i, added = 0, ret;

	leader = get_pid_task(tr->tgid, PIDTYPE_TGID);
	if (!leader)
		return -ESRCH;
	cap = get_nr_threads(leader) + 16;
	found = kvcalloc(cap, sizeof(*found), GFP_KERNEL);
	if (!found) {
		put_task_struct(leader);
		return -ENOMEM;
	}
	rcu_read_lock();
	spin_lock(&tr->lock);
	for_each_thread(leader, t)
	{
		if (n == cap)
			break;
		if (t->flags & PF_EXITING || ooh_thread_known(tr, t))
			continue;
		get_task_struct(t);
		found[n++] = t;
	}
	spin_unlock(&tr->lock);
	rcu_read_unlock();
	put_task_struct(leader);
	for (i = 0; i < n; i++) {
		ret = ooh_attach_task(tr, found[i]);
		if (ret < 0) {
			while (++i < n)
				put_task_struct(found[i]);
			kvfree(found);
			return ret;
		}
		added += ret;
	}
	kvfree(found);
	return added;
}

static bool ooh_attach_settled(struct ooh_tracker *tr)
{
	struct ooh_thread *th;
	bool settled = true;

	spin_lock(&tr->lock);
	list_for_each_entry(th, &tr->threads, node)
	{
		if (READ_ONCE(th->state) != OOH_THREAD_QUEUED)
			continue;
		/*
		 * A stopped or traced thread runs the work when it resumes,
		 * before any user-mode instruction: it need not be waited for.
		 */
		if (!task_is_stopped_or_traced(th->task) && !READ_ONCE(th->task->exit_state)) {
			settled = false;
			break;
		}
	}
	spin_unlock(&tr->lock);
	return settled;
}

static bool ooh_task_gone(struct task_struct *t)
{
	return READ_ONCE(t->__state) == TASK_DEAD && !READ_ONCE(t->on_cpu);
}

/*
 * Detaches every thread: each runs the detach work itself. Threads that
 * cannot run it yet (stopped) free themselves when they do. The threads move
 * to @waiting with a reference each. Called with ooh_lock held.
 */
static void ooh_detach_all(struct ooh_tracker *tr, struct list_head *waiting)
{
	struct ooh_thread *th, *tmp;
	LIST_HEAD(all);

	/* Off the fork probe's list first: no thread is added after this. */
	spin_lock(&ooh_tracker_list_lock);
	list_del_init(&tr->node);
	spin_unlock(&ooh_tracker_list_lock);
	spin_lock(&tr->lock);
	list_splice_init(&tr->threads, &all);
	spin_unlock(&tr->lock);

	list_for_each_entry_safe(th, tmp, &all, node)
	{
		list_del(&th->node);
		WRITE_ONCE(th->mode, 0);
		if (READ_ONCE(th->state) != OOH_THREAD_DETACHED) {
			kref_get(&th->ref);
			if (task_work_add(th->task, &th->detach_work, TWA_SIGNAL)) {
				/*
				 * Exiting: its notifier may still fire (harmlessly,
				 * mode is 0) until its last switch; free it after.
				 */
				ooh_thread_put(th);
				list_add_tail(&th->node, &ooh_graveyard);
				continue;
			}
		}
		list_add_tail(&th->node, waiting);
	}
}

static bool ooh_all_detached(struct list_head *waiting)
{
	struct ooh_thread *th;

	list_for_each_entry(th, waiting,
			    node) if (READ_ONCE(th->state) != OOH_THREAD_DETACHED &&
				      !task_is_stopped_or_traced(th->task)) return false;
	return true;
}

static void ooh_reap_graveyard(void)
{
	struct ooh_thread *th, *tmp;

	list_for_each_entry_safe(th, tmp, &ooh_graveyard, node)
	{
		if (!ooh_task_gone(th->task))
			continue;
		list_del(&th->node);
		ooh_thread_put(th);
	}
}

/* ---- rings ---- */

static void ooh_ring_push(struct ooh_tracker *tr, u64 addr)
{
	struct ooh_ring_header *hdr = tr->hdr;
	u64 head = hdr->head;

	if (head - READ_ONCE(hdr->tail) >= hdr->capacity) {
		/* Never silent: the consumer sees lost_events move. */
		WRITE_ONCE(hdr->lost_events, hdr->lost_events + 1);
		return;
	}
	tr->entries[head & (hdr->capacity - 1)] = addr;
	smp_store_release(&hdr->head, head + 1);
}

static int ooh_push_spml(int id, void *p, void *data)
{
	struct ooh_tracker *tr = p;

	if (tr->mode == OOH_MODE_SPML)
		ooh_ring_push(tr, *(u64 *)data & PAGE_MASK);
	return 0;
}

static void ooh_sink(void *ctx, u32 tag, u64 gpa, u64 gva)
{
	struct ooh_tracker *tr;

	if (tag == OOH_TAG_ALL) {
		/* Frames map back per tracker: the others drop it. */
		idr_for_each(&ooh_trackers, ooh_push_spml, &gpa);
		return;
	}
	tr = idr_find(&ooh_trackers, tag);
	if (!tr)
		return; /* tracker gone: nobody to tell */
	if (tr->mode == OOH_MODE_EPML) {
		/* Kernel addresses are never the target's pages. */
		if (gva >= TASK_SIZE_MAX)
			return;
		ooh_ring_push(tr, gva & PAGE_MASK);
	} else {
		ooh_ring_push(tr, gpa & PAGE_MASK);
	}
}

static int ooh_mark_lost(int id, void *p, void *data)
{
	struct ooh_tracker *tr = p;

	WRITE_ONCE(tr->hdr->lost_events, tr->hdr->lost_events + 1);
	return 0;
}

static int ooh_notify_one(int id, void *p, void *data)
{
	struct ooh_tracker *tr = p;
	u64 head = tr->hdr->head;

	/* Wake oohd when a quarter of the ring has filled since last time. */
	if (tr->uio_registered && head - tr->notified_head >= tr->hdr->capacity / 4) {
		tr->notified_head = head;
		uio_event_notify(&tr->uio);
	}
	return 0;
}

/* Called with ooh_lock held. */
static void ooh_drain_locked(bool to_rearm)
{
	struct ooh_transport *t = rcu_dereference_protected(ooh_active, lockdep_is_held(&ooh_lock));

	if (!t)
		return;
	/* Between collects, also take what sits in the per-vCPU buffers. */
	if (!to_rearm && t->ops->flush && !idr_is_empty(&ooh_trackers))
		t->ops->flush(t);
	if (t->ops->drain(t, to_rearm, ooh_sink, NULL))
		idr_for_each(&ooh_trackers, ooh_mark_lost, NULL);
	idr_for_each(&ooh_trackers, ooh_notify_one, NULL);
}

static void ooh_drain_workfn(struct work_struct *work)
{
	bool again;

	mutex_lock(&ooh_lock);
	ooh_drain_locked(false);
	ooh_reap_graveyard();
	again = !idr_is_empty(&ooh_trackers) || !list_empty(&ooh_graveyard);
	mutex_unlock(&ooh_lock);
	if (again)
		schedule_delayed_work(&ooh_drain_work, msecs_to_jiffies(OOH_DRAIN_INTERVAL_MS));
}

/* ---- transports ---- */

void ooh_kick_drain(void)
{
	mod_delayed_work(system_wq, &ooh_drain_work, 0);
}

int ooh_register_transport(struct ooh_transport *t)
{
	int ret = -EBUSY;

	mutex_lock(&ooh_lock);
	if (!rcu_access_pointer(ooh_active)) {
		rcu_assign_pointer(ooh_active, t);
		pr_info("PML transport: %s\n", t->name);
		ret = 0;
	}
	mutex_unlock(&ooh_lock);
	return ret;
}

void ooh_unregister_transport(struct ooh_transport *t)
{
	mutex_lock(&ooh_lock);
	if (rcu_access_pointer(ooh_active) == t) {
		RCU_INIT_POINTER(ooh_active, NULL);
		/* The trackers cannot be exact any more. */
		idr_for_each(&ooh_trackers, ooh_mark_lost, NULL);
	}
	mutex_unlock(&ooh_lock);
	synchronize_rcu();
}

/* ---- /dev/ooh-ctl ---- */

/*
 * The credential part of ptrace_may_access(PTRACE_MODE_ATTACH_REALCREDS),
 * which modules cannot call: the caller's real uid/gid equal all of the
 * target's, or CAP_SYS_PTRACE in its user namespace; and a target that is
 * not dumpable needs CAP_SYS_PTRACE in its mm's namespace. The LSM part
 * comes from the mem fd below.
 */
static int ooh_may_ptrace_realcreds(struct task_struct *task)
{
	const struct cred *cred = current_cred(), *tcred;
	struct mm_struct *mm;
	bool ok;

	if (same_thread_group(task, current))
		return 0;
	rcu_read_lock();
	tcred = __task_cred(task);
	ok = (uid_eq(cred->uid, tcred->euid) && uid_eq(cred->uid, tcred->suid) &&
	      uid_eq(cred->uid, tcred->uid) && gid_eq(cred->gid, tcred->egid) &&
	      gid_eq(cred->gid, tcred->sgid) && gid_eq(cred->gid, tcred->gid)) ||
	     ns_capable(tcred->user_ns, CAP_SYS_PTRACE);
	rcu_read_unlock();
	if (!ok)
		return -EPERM;
	mm = get_task_mm(task);
	if (mm) {
		ok = get_dumpable(mm) == SUID_DUMP_USER || ns_capable(mm->user_ns, CAP_SYS_PTRACE);
		mmput(mm);
	}
	return ok ? 0 : -EPERM;
}

/*
 * The caller proves it may ptrace the target by an fd of /proc/<pid>/mem:
 * opening it ran ptrace_may_access(PTRACE_MODE_ATTACH_FSCREDS) through every
 * LSM. ptrace_may_access() is not exported to modules, so this is how a
 * module gets the same decision. The fd must be procfs' "mem" of the
 * target's mm (procfs keeps that mm in private_data).
 */
static int ooh_check_mem_fd(int fd, struct task_struct *target)
{
	struct mm_struct *mm;
	struct file *f;
	int ret = -EPERM;

	f = fget(fd);
	if (!f)
		return -EBADF;
	mm = get_task_mm(target);
	if (!mm) {
		ret = -ESRCH;
		goto out;
	}
	if (file_inode(f)->i_sb->s_magic == PROC_SUPER_MAGIC &&
	    !strcmp(f->f_path.dentry->d_name.name, "mem") && (f->f_mode & FMODE_UNSIGNED_OFFSET) &&
	    f->private_data == mm)
		ret = 0;
	mmput(mm);
out:
	fput(f);
	return ret;
}

static void ooh_tracker_destroy(struct ooh_tracker *tr)
{
	struct ooh_thread *th, *tmp;
	LIST_HEAD(waiting);

	if (tr->uio_registered)
		uio_unregister_device(&tr->uio);
	mutex_lock(&ooh_lock);
	ooh_detach_all(tr, &waiting);
	if (tr->tag)
		idr_remove(&ooh_trackers, tr->tag);
	mutex_unlock(&ooh_lock);
	/* Wait a little for the detaches, so that rmmod after close works. */
	wait_event_timeout(ooh_wq, ooh_all_detached(&waiting), OOH_DETACH_TIMEOUT);
	list_for_each_entry_safe(th, tmp, &waiting, node)
	{
		list_del(&th->node);
		ooh_thread_put(th);
	}
	/* Threads that had exited are usually dead by now: free them at once. */
	mutex_lock(&ooh_lock);
	ooh_reap_graveyard();
	mutex_unlock(&ooh_lock);
	schedule_delayed_work(&ooh_drain_work, msecs_to_jiffies(OOH_DRAIN_INTERVAL_MS));
	put_pid(tr->tgid);
	vfree(tr->hdr);
	kfree(tr);
}

static long ooh_ioctl_track(struct file *file, void __user *arg)
{
	struct ooh_track_req req;
	struct ooh_tracker *tr;
	struct task_struct *task;
	struct ooh_transport *t;
	u32 entries;
	size_t bytes;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.size != sizeof(req))
		return -EINVAL;
	if (req.mode != OOH_MODE_SPML && req.mode != OOH_MODE_EPML)
		return -EINVAL;
	entries = req.ring_entries ?: OOH_RING_DEFAULT_ENTRIES;
	if (!is_power_of_2(entries) || entries < 512 || entries > OOH_RING_MAX_ENTRIES)
		return -EINVAL;
	if (file->private_data)
		return -EBUSY; /* one tracker per open file */

	mutex_lock(&ooh_lock);
	t = rcu_dereference_protected(ooh_active, lockdep_is_held(&ooh_lock));
	ret = !t ? -ENODEV : !(t->modes & (1u << req.mode)) ? -EOPNOTSUPP : 0;
	mutex_unlock(&ooh_lock);
	if (ret == -ENODEV)
		pr_err("no PML transport (no Xen SPML, no emulated PML device)\n");
	if (ret)
		return ret;

	tr = kzalloc(sizeof(*tr), GFP_KERNEL);
	if (!tr)
		return -ENOMEM;
	INIT_LIST_HEAD(&tr->threads);
	INIT_LIST_HEAD(&tr->node);
	spin_lock_init(&tr->lock);
	tr->mode = req.mode;
	tr->tgid = find_get_pid(req.pid);
	task = tr->tgid ? get_pid_task(tr->tgid, PIDTYPE_TGID) : NULL;
	if (!task) {
		ret = -ESRCH;
		goto err_free;
	}
	ret = ooh_may_ptrace_realcreds(task);
	if (!ret)
		ret = ooh_check_mem_fd(req.mem_fd, task);
	put_task_struct(task);
	if (ret)
		goto err_free;

	bytes = PAGE_SIZE + PAGE_ALIGN((size_t)entries * sizeof(u64));
	tr->hdr = vmalloc_user(bytes);
	if (!tr->hdr) {
		ret = -ENOMEM;
		goto err_free;
	}
	tr->ring_bytes = bytes;
	tr->entries = (u64 *)((char *)tr->hdr + PAGE_SIZE);
	tr->hdr->magic = OOH_RING_MAGIC;
	tr->hdr->abi_version = OOH_ABI_VERSION;
	tr->hdr->mode = req.mode;
	tr->hdr->page_shift = PAGE_SHIFT;
	tr->hdr->capacity = entries;
	tr->hdr->entries_offset = PAGE_SIZE;
	tr->hdr->pid = req.pid;

	tr->uio.name = OOH_RING_UIO_NAME;
	tr->uio.version = "1";
	tr->uio.irq = UIO_IRQ_CUSTOM;
	tr->uio.mem[0].name = "ring";
	tr->uio.mem[0].addr = (phys_addr_t)(unsigned long)tr->hdr;
	tr->uio.mem[0].size = bytes;
	tr->uio.mem[0].memtype = UIO_MEM_VIRTUAL;

	mutex_lock(&ooh_lock);
	ret = idr_alloc(&ooh_trackers, tr, 1, 1 << 30, GFP_KERNEL);
	if (ret < 0) {
		mutex_unlock(&ooh_lock);
		goto err_free;
	}
	tr->tag = ret;
	/* Threads created from here on are attached by the fork probe. */
	spin_lock(&ooh_tracker_list_lock);
	list_add_tail(&tr->node, &ooh_tracker_list);
	spin_unlock(&ooh_tracker_list_lock);
	ret = ooh_attach_new_threads(tr);
	mutex_unlock(&ooh_lock);
	if (ret < 0)
		goto err_destroy;

	/* The epoch starts once every running thread logs. */
	/* Nobody else sees this tracker yet: its thread list is stable. */
	if (!wait_event_timeout(ooh_wq, ooh_attach_settled(tr), OOH_ATTACH_TIMEOUT)) {
		/* Writes may have been missed: say so rather than guess. */
		pr_warn("pid %d: not every thread attached in time\n", req.pid);
		tr->hdr->lost_events++;
	}

	/*
	 * The first epoch starts with every page armed: a page logged earlier
	 * (for another tracker, or shared) would otherwise not be logged again.
	 */
	mutex_lock(&ooh_lock);
	t = rcu_dereference_protected(ooh_active, lockdep_is_held(&ooh_lock));
	ret = t ? t->ops->flush_rearm(t) : -ENODEV;
	if (!ret)
		ooh_drain_locked(true);
	mutex_unlock(&ooh_lock);
	if (ret)
		goto err_destroy;

	ret = uio_register_device(ooh_misc.this_device, &tr->uio);
	if (ret)
		goto err_destroy;
	tr->uio_registered = true;

	req.uio_index = tr->uio.uio_dev->minor;
	req.ring_bytes = bytes;
	req.threads = tr->hdr->threads;
	if (copy_to_user(arg, &req, sizeof(req))) {
		ret = -EFAULT;
		goto err_destroy;
	}
	file->private_data = tr;
	schedule_delayed_work(&ooh_drain_work, msecs_to_jiffies(OOH_DRAIN_INTERVAL_MS));
	return 0;

err_destroy:
	ooh_tracker_destroy(tr);
	return ret;
err_free:
	put_pid(tr->tgid);
	vfree(tr->hdr);
	kfree(tr);
	return ret;
}

static long ooh_ioctl_collect(struct file *file, void __user *arg)
{
	struct ooh_tracker *tr = file->private_data;
	struct ooh_collect_req req;
	struct ooh_transport *t;
	int ret;

	if (!tr)
		return -EINVAL;
	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.size != sizeof(req) || req.flags)
		return -EINVAL;

	mutex_lock(&ooh_lock);
	t = rcu_dereference_protected(ooh_active, lockdep_is_held(&ooh_lock));
	if (!t) {
		ret = -ENODEV;
		goto out;
	}
	/*
	 * The fork probe attaches new threads; one found here ran unlogged
	 * (or an mm sharer appeared): this epoch cannot be exact.
	 */
	ret = ooh_attach_new_threads(tr);
	if (ret < 0)
		goto out;
	if (ret > 0 || atomic_xchg(&tr->lost_pending, 0))
		tr->hdr->lost_events++;
	ret = t->ops->flush_rearm(t);
	if (ret)
		goto out;
	ooh_drain_locked(true);
	smp_store_release(&tr->hdr->collect_head, tr->hdr->head);
	tr->hdr->collects++;
	req.collect_head = tr->hdr->collect_head;
	req.lost_events = tr->hdr->lost_events;
	ret = 0;
out:
	mutex_unlock(&ooh_lock);
	if (!ret && copy_to_user(arg, &req, sizeof(req)))
		ret = -EFAULT;
	return ret;
}

static long ooh_ioctl_info(void __user *arg)
{
	struct ooh_info info = {};
	struct ooh_transport *t;
	u32 size;

	if (get_user(size, (u32 __user *)arg))
		return -EFAULT;
	if (size != sizeof(info))
		return -EINVAL;
	info.size = size;
	info.abi_version = OOH_ABI_VERSION;
	mutex_lock(&ooh_lock);
	t = rcu_dereference_protected(ooh_active, lockdep_is_held(&ooh_lock));
	if (t) {
		info.transports = t->transport_bit;
		info.modes = t->modes;
		strscpy(info.transport, t->name, sizeof(info.transport));
	}
	mutex_unlock(&ooh_lock);
	return copy_to_user(arg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long ooh_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case OOH_IOC_INFO:
		return ooh_ioctl_info(uarg);
	case OOH_IOC_TRACK:
		return ooh_ioctl_track(file, uarg);
	case OOH_IOC_COLLECT:
		return ooh_ioctl_collect(file, uarg);
	}
	return -ENOTTY;
}

static int ooh_open(struct inode *inode, struct file *file)
{
	/* misc_open left the miscdevice here; the tracker goes here instead. */
	file->private_data = NULL;
	return nonseekable_open(inode, file);
}

static int ooh_release(struct inode *inode, struct file *file)
{
	struct ooh_tracker *tr = file->private_data;

	if (tr)
		ooh_tracker_destroy(tr);
	return 0;
}

static const struct file_operations ooh_fops = {
	.owner = THIS_MODULE,
	.open = ooh_open,
	.unlocked_ioctl = ooh_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.release = ooh_release,
	.llseek = noop_llseek,
};

static struct miscdevice ooh_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "ooh-ctl",
	.fops = &ooh_fops,
	.mode = 0600,
};

static void ooh_find_fork_tp(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sched_process_fork"))
		ooh_tp_fork = tp;
}

static int __init ooh_init(void)
{
	int ret;

	INIT_DELAYED_WORK(&ooh_drain_work, ooh_drain_workfn);
	preempt_notifier_inc();
	for_each_kernel_tracepoint(ooh_find_fork_tp, NULL);
	if (!ooh_tp_fork) {
		pr_err("tracepoint sched_process_fork not found\n");
		preempt_notifier_dec();
		return -ENOENT;
	}
	ret = tracepoint_probe_register(ooh_tp_fork, ooh_on_fork, NULL);
	if (ret) {
		preempt_notifier_dec();
		return ret;
	}
	ooh_emul_init();
	ooh_xen_init();
	if (!rcu_access_pointer(ooh_active)) {
		pr_err("no PML transport: neither Xen SPML nor the emulated PML device (ivshmem "
		       "with the qemu-pml plugin) is present\n");
		ret = -ENODEV;
		goto err;
	}
	ret = misc_register(&ooh_misc);
	if (ret)
		goto err;
	return 0;
err:
	ooh_xen_exit();
	ooh_emul_exit();
	tracepoint_probe_unregister(ooh_tp_fork, ooh_on_fork, NULL);
	tracepoint_synchronize_unregister();
	preempt_notifier_dec();
	return ret;
}

static void __exit ooh_exit(void)
{
	misc_deregister(&ooh_misc);
	cancel_delayed_work_sync(&ooh_drain_work);
	mutex_lock(&ooh_lock);
	ooh_reap_graveyard();
	mutex_unlock(&ooh_lock);
	tracepoint_probe_unregister(ooh_tp_fork, ooh_on_fork, NULL);
	tracepoint_synchronize_unregister();
	ooh_xen_exit();
	ooh_emul_exit();
	preempt_notifier_dec();
}

module_init(ooh_init);
module_exit(ooh_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("OoH: per-process Page Modification Logging rings for oohd");
