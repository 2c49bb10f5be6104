using System.Runtime.CompilerServices;

namespace DumpScope.Scenarios;

// Subscribers that forgot to unsubscribe from a static event: the event's
// delegate keeps every one of them (and what they hold) alive.

public static class Publisher
{
    public static event EventHandler? PriceChanged;

    internal static int HandlerCount => PriceChanged?.GetInvocationList().Length ?? 0;
}

public sealed class Subscriber
{
    private readonly byte[] _history = new byte[256];
    private int _notifications;

    public void OnPriceChanged(object? sender, EventArgs e) => _notifications += _history.Length;
}

internal static class EventLeak
{
    internal static Facts Plant(string[] args)
    {
        int count = (int)Args.Long(args, "--subscribers", 10000);
        Subscribe(count);
        GC.Collect();
        return new Facts
        {
            ["subscriber_type"] = typeof(Subscriber).FullName,
            ["subscriber_count"] = count,
            ["subscriber_history_bytes"] = 256,
            ["event_owner_type"] = typeof(Publisher).FullName,
            ["event_name"] = nameof(Publisher.PriceChanged),
            ["handler_type"] = typeof(EventHandler).FullName,
            ["handler_count"] = Publisher.HandlerCount,
        };
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Subscribe(int count)
    {
        for (int i = 0; i < count; i++)
        {
            Publisher.PriceChanged += new Subscriber().OnPriceChanged;
        }
    }
}
