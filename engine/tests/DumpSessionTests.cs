using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Tests;

public class DumpSessionTests
{
    private static DumpSession Open(string scenario, string runtime, bool explicitDac = false)
    {
        var (dump, runtimeDir) = ScenarioDumps.Get(scenario, runtime);
        string? dac = explicitDac ? Path.Combine(runtimeDir, "libmscordaccore.so") : null;
        return DumpSession.Open(dump, new DacOptions(Dac: dac), EngineLimits.Default);
    }

    [Fact]
    public void A_net10_dump_opens_offline_with_the_dac_beside_its_runtime()
    {
        var (_, runtimeDir) = ScenarioDumps.Get("blocked-finalizer", "net10");
        using var session = Open("blocked-finalizer", "net10");
        Assert.Equal(Path.Combine(runtimeDir, "libmscordaccore.so"), session.Info.DacPath);
        Assert.StartsWith("10.", session.Info.Version);
        Assert.Equal(8, session.Info.PointerSize);
        Assert.True(session.Info.HeapReadable);
        Assert.False(session.Info.IsServerGc);
    }

    [Fact]
    public void A_net8_self_contained_dump_opens_with_an_explicit_dac()
    {
        using var session = Open("blocked-finalizer", "net8", explicitDac: true);
        Assert.True(session.Info.DacExplicit);
        Assert.True(session.HeapStatistics(null, CancellationToken.None).TotalObjects > 5000);
    }

    [Fact]
    public void An_explicit_dac_that_does_not_exist_is_named_in_the_error()
    {
        var (dump, _) = ScenarioDumps.Get("blocked-finalizer", "net10");
        var error = Assert.Throws<EngineException>(() => DumpSession.Open(dump, new DacOptions(Dac: "/nowhere/libmscordaccore.so"), EngineLimits.Default));
        Assert.Equal(ErrorCodes.DacNotFound, error.Code);
        Assert.Contains("/nowhere/libmscordaccore.so", error.Message);
        Assert.Contains("--dac", error.Message);
    }

    [Fact]
    public void A_file_that_is_not_a_dump_is_refused_with_a_reason()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "this is not a core dump");
            var error = Assert.Throws<EngineException>(() => DumpSession.Open(path, new DacOptions(), EngineLimits.Default));
            Assert.Equal(ErrorCodes.DumpUnreadable, error.Code);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Heap_statistics_sum_to_their_totals_and_list_free_space_as_Free()
    {
        using var session = Open("blocked-finalizer", "net10");
        var stats = session.HeapStatistics(null, CancellationToken.None);
        Assert.Equal(stats.TotalObjects, stats.Types.Sum(t => t.Count));
        Assert.Equal(stats.TotalBytes, stats.Types.Aggregate(0UL, (a, t) => a + t.Size));
        Assert.Contains(stats.Types, t => t.Name == "Free");
        Assert.Equal(stats.Types.Select(t => t.Size).Order(), stats.Types.Select(t => t.Size));
        Assert.Single(stats.Types, t => t.Name == "DumpScope.Scenarios.SmallResource" && t.Count == 5000);
    }

    [Fact]
    public void A_cancelled_heap_walk_stops_with_OperationCanceledException()
    {
        using var session = Open("blocked-finalizer", "net10");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => session.HeapStatistics(null, cts.Token));
    }

    [Fact]
    public void The_finalizer_thread_waits_on_the_lock_the_holder_thread_owns()
    {
        using var session = Open("blocked-finalizer", "net10");
        var threads = session.Threads(CancellationToken.None);
        var finalizer = Assert.Single(threads, t => t.IsFinalizer);
        var holder = Assert.Single(threads, t => t.Name == "LockHolder");
        Assert.NotNull(finalizer.WaitsFor);
        Assert.Equal(holder.OsId, finalizer.WaitsFor!.Value.OwnerOsId);
        Assert.Equal("DumpScope.Scenarios.FinalizerLock", finalizer.WaitsFor.Value.Type);
        Assert.Contains(finalizer.Frames, f => f.Name.Contains("Finalize()"));
    }

    [Fact]
    public void Threads_and_monitors_agree_and_share_one_walk_of_the_stacks()
    {
        using var session = Open("deadlock", "net10");
        var threads = session.Threads(CancellationToken.None);
        var monitors = session.MonitorList(CancellationToken.None).Items;

        // Each deadlocked worker waits for the monitor the other one holds.
        var orders = Assert.Single(threads, t => t.Name == "OrderWorker");
        var inventory = Assert.Single(threads, t => t.Name == "InventoryWorker");
        Assert.Equal(inventory.OsId, orders.WaitsFor?.OwnerOsId);
        Assert.Equal(orders.OsId, inventory.WaitsFor?.OwnerOsId);

        var waiters = threads.Where(t => t.WaitsFor is not null).ToList();
        Assert.True(waiters.Count >= 2);
        foreach (var waiter in waiters)
        {
            var wait = waiter.WaitsFor!.Value;
            var monitor = Assert.Single(monitors, m => m.Object == wait.Object);
            Assert.Equal(wait.OwnerOsId, monitor.OwnerOsId);
            Assert.Contains(waiter.OsId, monitor.WaitingOsIds);
        }
        var waiting = monitors.SelectMany(m => m.WaitingOsIds).Order().ToList();
        Assert.Equal(waiters.Select(t => t.OsId).Order().ToList(), waiting);

        session.Threads(CancellationToken.None);
        Assert.Equal(1, session.ThreadWalkCount);
    }

    [Fact]
    public void A_cancelled_thread_walk_is_not_kept()
    {
        using var session = Open("deadlock", "net10");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => session.MonitorList(cts.Token));
        Assert.Equal(0, session.ThreadWalkCount);
        Assert.NotEmpty(session.MonitorList(CancellationToken.None).Items);
        Assert.Equal(1, session.ThreadWalkCount);
    }

    [Fact]
    public void Object_detail_of_an_unknown_address_is_a_not_found_error()
    {
        using var session = Open("blocked-finalizer", "net10");
        var error = Assert.Throws<EngineException>(() => session.ObjectAt(0x10));
        Assert.Equal(ErrorCodes.NotFound, error.Code);
    }

    [Fact]
    public void Object_detail_of_an_address_inside_an_object_is_that_object()
    {
        using var session = Open("blocked-finalizer", "net10");
        TypeStat strings = session.HeapStatistics(null, CancellationToken.None).Types.First(t => t.Name == "System.String");
        Instance largest = session.InstancesOf(strings.MethodTable, 0, 1, "size", null, CancellationToken.None).Items[0];
        ObjectDetail inside = session.ObjectAt(largest.Address + largest.Size - 1);
        Assert.Equal(largest.Address, inside.Address);
        Assert.Equal("System.String", inside.Type);
        // Just past it is another object or free space, never this one.
        Assert.NotEqual(largest.Address, TryObjectAt(session, largest.Address + largest.Size)?.Address);
    }

    private static ObjectDetail? TryObjectAt(DumpSession session, ulong address)
    {
        try
        {
            return session.ObjectAt(address);
        }
        catch (EngineException)
        {
            return null;
        }
    }
}
