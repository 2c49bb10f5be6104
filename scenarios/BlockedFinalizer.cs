using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace DumpScope.Scenarios;

// The Linux twin of a print-service leak: one finalizer blocks on a monitor
// that another thread never releases, so every finalizable object queued
// behind it (and the unmanaged memory it owns) stays alive forever.

/// <summary>The monitor the finalizer waits for; LockHolder owns it.</summary>
public sealed class FinalizerLock
{
}

/// <summary>Owns native memory that only its finalizer frees.</summary>
public sealed class UnmanagedBuffer
{
    private readonly IntPtr _memory;

    public UnmanagedBuffer(int size)
    {
        _memory = Marshal.AllocHGlobal(size);
        // Touch every page so the memory is committed, as real buffers are.
        unsafe
        {
            NativeMemory.Fill((void*)_memory, (nuint)size, 0x5A);
        }
    }

    public IntPtr Memory => _memory;

    ~UnmanagedBuffer() => Marshal.FreeHGlobal(_memory);
}

/// <summary>A small finalizable object, as thousands of wrappers are.</summary>
public sealed class SmallResource
{
    private static int s_finalized;
    private readonly int _id;

    public SmallResource(int id) => _id = id;

    ~SmallResource() => Interlocked.Add(ref s_finalized, _id >= 0 ? 1 : 0);
}

/// <summary>Its finalizer blocks forever on <see cref="Lock"/>.</summary>
public sealed class BlockingFinalizable
{
    internal static readonly FinalizerLock Lock = new();
    internal static readonly ManualResetEventSlim Entered = new();
    internal static Dictionary<string, object?>? FinalizerThread;

    ~BlockingFinalizable()
    {
        FinalizerThread = ThreadFacts.Current();
        Entered.Set();
        lock (Lock)
        {
        }
    }
}

internal static class BlockedFinalizer
{
    internal static Facts Plant(string[] args)
    {
        int bufferSize = (int)Args.Long(args, "--buffer-size", 2 * 1024 * 1024);
        int bufferCount = (int)Args.Long(args, "--buffers", 40);
        int smallCount = (int)Args.Long(args, "--small", 5000);

        var holderReady = new ManualResetEventSlim();
        Dictionary<string, object?>? holder = null;
        var holderThread = new Thread(() =>
        {
            lock (BlockingFinalizable.Lock)
            {
                holder = ThreadFacts.Current();
                holderReady.Set();
                Thread.Sleep(Timeout.Infinite);
            }
        })
        { Name = "LockHolder", IsBackground = true };
        if (OperatingSystem.IsWindows())
        {
            // As in the print service: the lock holder is an STA thread.
            holderThread.SetApartmentState(ApartmentState.STA);
        }
        holderThread.Start();
        Wait.For(holderReady, "LockHolder to take the lock");

        // First the blocker alone, so the finalizer thread is stuck before the
        // others become ready and none of them gets finalized.
        AbandonBlocker();
        GC.Collect();
        Wait.For(BlockingFinalizable.Entered, "the finalizer to run BlockingFinalizable");
        Wait.ForBlockingToSettle();

        List<string> addresses = AbandonResources(bufferCount, bufferSize, smallCount);
        // No WaitForPendingFinalizers: it would never return.
        GC.Collect();

        return new Facts
        {
            ["buffer_type"] = typeof(UnmanagedBuffer).FullName,
            ["buffer_size"] = bufferSize,
            ["buffer_count"] = bufferCount,
            ["buffer_addresses"] = addresses,
            ["unmanaged_bytes"] = (long)bufferSize * bufferCount,
            ["small_resource_type"] = typeof(SmallResource).FullName,
            ["small_resource_count"] = smallCount,
            ["blocking_type"] = typeof(BlockingFinalizable).FullName,
            ["lock_type"] = typeof(FinalizerLock).FullName,
            ["lock_holder"] = holder,
            ["finalizer_thread"] = BlockingFinalizable.FinalizerThread,
            ["ready_for_finalization"] = new Dictionary<string, int>
            {
                [typeof(UnmanagedBuffer).FullName!] = bufferCount,
                [typeof(SmallResource).FullName!] = smallCount,
            },
        };
    }

    // Separate, never inlined: no local of the caller keeps the objects alive.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AbandonBlocker() => _ = new BlockingFinalizable();

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static List<string> AbandonResources(int bufferCount, int bufferSize, int smallCount)
    {
        var addresses = new List<string>(bufferCount);
        for (int i = 0; i < bufferCount; i++)
        {
            addresses.Add($"0x{new UnmanagedBuffer(bufferSize).Memory:x}");
        }
        for (int i = 0; i < smallCount; i++)
        {
            _ = new SmallResource(i);
        }
        return addresses;
    }
}
