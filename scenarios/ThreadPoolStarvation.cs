using System.Collections.Concurrent;

namespace DumpScope.Scenarios;

// Sync-over-async on every pool thread: each worker blocks on a task whose
// continuation needs a pool thread, so the queue only grows.

internal static class ThreadPoolStarvation
{
    // Keyed by managed thread id; a wait that ends (possible only before the
    // pool is saturated) removes its entry, so this holds the current waits.
    private static readonly ConcurrentDictionary<int, Dictionary<string, object?>> Blocked = new();

    internal static Facts Plant(string[] args)
    {
        int workers = (int)Args.Long(args, "--workers", 8);
        int items = (int)Args.Long(args, "--items", 64);

        // A fixed pool: thread injection would otherwise hide the starvation
        // for a while, and the dump should show a stable picture.
        if (!ThreadPool.SetMaxThreads(workers, workers) || !ThreadPool.SetMinThreads(workers, workers))
        {
            throw new InvalidOperationException($"cannot fix the thread pool at {workers} threads");
        }

        for (int i = 0; i < items; i++)
        {
            bool useResult = i % 2 == 0;
            ThreadPool.QueueUserWorkItem(_ => HandleRequest(useResult));
        }
        Wait.Until(() => Blocked.Count >= workers, $"{workers} blocked workers");
        Wait.ForBlockingToSettle();

        var blocked = Blocked.Values.ToArray();
        return new Facts
        {
            ["max_worker_threads"] = workers,
            ["work_items_queued"] = items,
            ["blocked_workers"] = blocked.Length,
            ["blocked_worker_threads"] = blocked,
            ["pending_work_items"] = ThreadPool.PendingWorkItemCount,
            ["thread_pool_threads"] = ThreadPool.ThreadCount,
        };
    }

    private static void HandleRequest(bool useResult)
    {
        Task<int> lookup = LookupAsync();
        var me = ThreadFacts.Current();
        me["wait"] = useResult ? "Task.Result" : "Task.Wait";
        Blocked[Environment.CurrentManagedThreadId] = me;
        if (useResult)
        {
            _ = lookup.Result;
        }
        else
        {
            lookup.Wait();
        }
        Blocked.TryRemove(Environment.CurrentManagedThreadId, out _);
    }

    private static async Task<int> LookupAsync()
    {
        // Long enough that every worker is blocked before the first delay ends.
        await Task.Delay(200).ConfigureAwait(false);
        return 42;
    }
}
