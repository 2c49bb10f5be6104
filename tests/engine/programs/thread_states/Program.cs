// A process whose threads sit in states the tests check against SOS:
// - "ThinHolder" inside lock(list), uncontended, so a thin lock in the
//   object header (no sync block), with the list on its stack;
// - the main thread inside Console.ReadLine, which locks the console reader;
// - "Thrower" asleep in a catch block, so its current exception is set.
// Prints READY, then waits for stdin to close.
var ready = new CountdownEvent(2);
var holder = new Thread(() =>
{
    var gate = new List<int> { 1, 2, 3 };
    lock (gate)
    {
        ready.Signal();
        Thread.Sleep(Timeout.Infinite);
    }
})
{ Name = "ThinHolder", IsBackground = true };
var thrower = new Thread(() =>
{
    try
    {
        throw new InvalidOperationException("planted by the thread-states test");
    }
    catch (InvalidOperationException)
    {
        ready.Signal();
        Thread.Sleep(Timeout.Infinite);
    }
})
{ Name = "Thrower", IsBackground = true };
holder.Start();
thrower.Start();
ready.Wait();
Console.WriteLine("READY");
Console.Out.Flush();
Console.ReadLine();
