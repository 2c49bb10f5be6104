using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace DumpScope.Scenarios;

// Three ways a program keeps what it no longer needs, none through an event:
// a static dictionary used as a cache that nothing evicts, a set held only by
// a GC handle, and jobs parked in the runtime's own AppContext data store
// (a static of System.AppContext, so the root lies inside the runtime's
// classes). Each holds thousands of small objects of one type.

public sealed class CachedReport
{
    public long Id;
    public byte[] Body = new byte[200];
}

public sealed class UserSession
{
    public long Id;
    public byte[] State = new byte[200];
}

public sealed class PendingJob
{
    public long Id;
    public byte[] Input = new byte[200];
}

public static class ReportCache
{
    internal static readonly Dictionary<long, CachedReport> Reports = new();
}

internal static class Retention
{
    internal const string JobsKey = "DumpScope.Scenarios.PendingJobs";

    // A GCHandle is a struct wrapping the handle's address: nothing in the
    // managed heap points at the set, only the handle table does.
    private static GCHandle s_sessions;

    internal static Facts Plant(string[] args)
    {
        int reports = (int)Args.Long(args, "--reports", 30000);
        int sessions = (int)Args.Long(args, "--sessions", 20000);
        int jobs = (int)Args.Long(args, "--jobs", 25000);
        Fill(reports, sessions, jobs);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return new Facts
        {
            ["cache_owner_type"] = typeof(ReportCache).FullName,
            ["cache_field"] = nameof(ReportCache.Reports),
            ["cache_item_type"] = typeof(CachedReport).FullName,
            ["cache_count"] = ReportCache.Reports.Count,
            ["handle_set_type"] = typeof(HashSet<UserSession>).FullName,
            ["handle_item_type"] = typeof(UserSession).FullName,
            ["handle_count"] = ((HashSet<UserSession>)s_sessions.Target!).Count,
            ["appcontext_key"] = JobsKey,
            ["appcontext_item_type"] = typeof(PendingJob).FullName,
            ["appcontext_count"] = ((List<PendingJob>)AppContext.GetData(JobsKey)!).Count,
            ["item_payload_bytes"] = 200,
        };
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Fill(int reports, int sessions, int jobs)
    {
        for (int i = 0; i < reports; i++)
        {
            ReportCache.Reports[i] = new CachedReport { Id = i };
        }
        var set = new HashSet<UserSession>();
        for (int i = 0; i < sessions; i++)
        {
            set.Add(new UserSession { Id = i });
        }
        s_sessions = GCHandle.Alloc(set, GCHandleType.Normal);
        var pending = new List<PendingJob>();
        for (int i = 0; i < jobs; i++)
        {
            pending.Add(new PendingJob { Id = i });
        }
        AppContext.SetData(JobsKey, pending);
    }
}
