namespace DumpScope.Scenarios;

// Two threads take the same two monitors in opposite order.

/// <summary>Guards orders; OrderWorker holds it and wants InventoryLock.</summary>
public sealed class OrdersLock
{
}

/// <summary>Guards inventory; InventoryWorker holds it and wants OrdersLock.</summary>
public sealed class InventoryLock
{
}

internal static class Deadlock
{
    internal static Facts Plant(string[] args)
    {
        var orders = new OrdersLock();
        var inventory = new InventoryLock();
        var bothHoldOne = new Barrier(2);
        var waiting = new CountdownEvent(2);
        var threads = new Dictionary<string, object?>[2];

        Thread Start(int slot, string name, object first, object second)
        {
            var thread = new Thread(() =>
            {
                lock (first)
                {
                    var me = ThreadFacts.Current();
                    me["holds"] = first.GetType().FullName;
                    me["waits_for"] = second.GetType().FullName;
                    threads[slot] = me;
                    bothHoldOne.SignalAndWait();
                    waiting.Signal();
                    lock (second)
                    {
                    }
                }
            })
            { Name = name, IsBackground = true };
            thread.Start();
            return thread;
        }

        Start(0, "OrderWorker", orders, inventory);
        Start(1, "InventoryWorker", inventory, orders);
        if (!waiting.Wait(TimeSpan.FromSeconds(30)))
        {
            throw new TimeoutException("timed out waiting for both workers to hold a lock");
        }
        Wait.ForBlockingToSettle();

        return new Facts
        {
            ["threads"] = threads,
            ["lock_types"] = new[] { typeof(OrdersLock).FullName, typeof(InventoryLock).FullName },
        };
    }
}
